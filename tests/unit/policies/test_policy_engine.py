"""PolicyEngine with PatternRedactor: verdicts, storage redaction, and the worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from policies.base import Context
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor, PresidioRedactor, Redaction
from policies.schema import (
    PiiPolicy,
    PolicyFile,
    Stages,
    default_policy_path,
    load_policy,
    parse_policy,
)
from policies.verdicts import Allow, Block, Finding, Verdict


class ThreadRecordingRedactor(PatternRedactor):
    """PatternRedactor that notes which thread each call ran on, and can be slowed down."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.delay_s = delay_s

    def warm_up(self) -> None:
        self.threads.add(threading.get_ident())

    def redact(self, text: str) -> Redaction:
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)  # stands in for presidio's CPU-bound work
        return super().redact(text)


@pytest.fixture
def engine() -> Iterator[PolicyEngine]:
    engine = PolicyEngine(load_policy(default_policy_path()), PatternRedactor())
    engine.warm_up()
    yield engine
    engine.close()


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        (
            "Refund to 4111 1111 1111 1111 please",
            Allow("Refund to <CREDIT_CARD> please", ("CREDIT_CARD",)),
        ),
        (
            "a@b.io and c@d.io, or 2125550182",
            Allow(
                "<EMAIL_ADDRESS> and <EMAIL_ADDRESS>, or <PHONE_NUMBER>",
                ("EMAIL_ADDRESS", "PHONE_NUMBER"),
            ),
        ),
        ("Where is order 12345?", Allow("Where is order 12345?")),
        ("   ", Allow("   ")),  # empty input is the caller's to refuse, not a policy verdict
    ],
)
async def test_check_input_allows_redacted_text_when_called(text: str, verdict: Allow) -> None:
    # PII alone: the other input stages have their own tests.
    policy = PolicyFile(version=1, stages=Stages(input=["pii"]))
    engine = PolicyEngine(policy, PatternRedactor())
    found = await engine.check_input(text)
    engine.close()
    assert isinstance(found, Allow)
    assert (found.text, found.entities) == (verdict.text, verdict.entities)
    assert [(f.stage, f.entity_type, f.action) for f in found.findings] == [
        ("pii", kind, "redact") for kind in verdict.entities
    ]


async def test_storage_text_is_redacted_when_stored(engine: PolicyEngine) -> None:
    assert await engine.redact_for_storage("mail a@b.io") == "mail <EMAIL_ADDRESS>"


async def test_storage_runs_the_scrub_after_pii_and_audits_it(engine: PolicyEngine) -> None:
    context = Context("input", conversation="c1")
    stored = await engine.storage_redaction("Sjöberg: mail a@b.io", context)
    assert stored.text == "<NAME>: mail <EMAIL_ADDRESS>"
    assert stored.entity_types == ("EMAIL_ADDRESS",)  # what the PII stage found
    # Text the PII stage already redacted (an allowed message, an answer): the scrub only.
    scrubbed = await engine.scrub_for_storage("Hi Sjöberg, <EMAIL_ADDRESS> or 468 3505")
    assert scrubbed == "Hi <NAME>, <EMAIL_ADDRESS> or <NUMBER>"
    counts = engine.audit.counts()
    assert counts[("storage", "scrub", "unknown_word", "redact")] == 2
    assert counts[("storage", "scrub", "digits", "redact")] == 1


async def test_storage_is_the_pii_stage_alone_without_scrub() -> None:
    policy = parse_policy("version: 1\nstages:\n  storage: [pii]\n")
    engine = PolicyEngine(policy, PatternRedactor())
    engine.warm_up()
    try:
        assert await engine.redact_for_storage("Sjöberg: a@b.io") == "Sjöberg: <EMAIL_ADDRESS>"
        assert await engine.scrub_for_storage("Sjöberg") == "Sjöberg"
    finally:
        engine.close()


async def test_the_scrub_keeps_the_words_of_the_engines_vocabulary() -> None:
    words = {"kallax"}
    engine = PolicyEngine(
        load_policy(default_policy_path()), PatternRedactor(), vocabulary=lambda: words
    )
    engine.warm_up()
    try:
        assert await engine.scrub_for_storage("Kallax for Sjöberg") == "Kallax for <NAME>"
        assert engine.vocabulary is not None and "kallax" in engine.vocabulary()
    finally:
        engine.close()


async def test_output_filter_streams_redacted_text_when_fed(engine: PolicyEngine) -> None:
    output = engine.output_filter()
    pieces = ["Your card", " 4111 1111", " 1111 1111", " is saved.", " Bye"]
    released = [await engine.feed(output, piece) for piece in pieces]
    assert released == ["", "", "", "", "Your card <CREDIT_CARD> is saved. "]  # " " ends it
    assert await engine.flush(output) == "Bye"


def test_exposes_policy_and_fallback_when_built() -> None:
    policy = PolicyFile(version=1)
    engine = PolicyEngine(policy, PatternRedactor())
    assert engine.policy is policy
    assert engine.messages(None) == policy.messages
    assert engine.output_filter().stream.held_chars == 0
    engine.close()


async def test_redactor_runs_on_one_worker_thread_when_called_concurrently() -> None:
    redactor = ThreadRecordingRedactor()
    engine = PolicyEngine(PolicyFile(version=1), redactor)
    engine.warm_up()
    output = engine.output_filter()
    await asyncio.gather(
        *(engine.check_input(f"call 212555018{i}") for i in range(10)),
        engine.redact_for_storage("a@b.io"),
        engine.feed(output, "Hello. "),
        engine.flush(output),
    )
    engine.close()
    assert len(redactor.threads) == 1
    assert threading.get_ident() not in redactor.threads


async def test_event_loop_keeps_running_when_redaction_is_slow() -> None:
    engine = PolicyEngine(PolicyFile(version=1), ThreadRecordingRedactor(delay_s=0.3))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await engine.check_input("a@b.io")
    task.cancel()
    engine.close()
    assert ticks >= 10  # the loop ran the ticker while the redactor worked


async def test_calls_fail_when_engine_is_closed(engine: PolicyEngine) -> None:
    engine.close()
    with pytest.raises(RuntimeError):
        await engine.check_input("hello")


def test_from_file_loads_default_without_loading_presidio_when_path_is_none() -> None:
    started = time.perf_counter()
    engine = PolicyEngine.from_file(None)
    assert time.perf_counter() - started < 1.0  # cheap: presidio loads in warm_up()
    assert engine.policy == load_policy(default_policy_path())
    engine.close()


def test_presidio_refuses_to_redact_when_not_warmed_up() -> None:
    with pytest.raises(RuntimeError, match="warm_up"):
        PresidioRedactor(PiiPolicy()).redact("John Smith")


def test_presidio_passes_text_through_when_pii_is_disabled() -> None:
    redactor = PresidioRedactor(PiiPolicy(enabled=False))
    redactor.warm_up()  # nothing to load when disabled
    assert redactor.redact("John Smith, a@b.io").text == "John Smith, a@b.io"


async def test_redactor_runs_only_when_a_piece_can_release_text() -> None:
    class Counting(PatternRedactor):
        calls = 0

        def redact(self, text: str) -> Redaction:
            Counting.calls += 1
            return super().redact(text)

    engine = PolicyEngine(load_policy(default_policy_path()), Counting())
    engine.warm_up()
    output = engine.output_filter()
    assert [await engine.feed(output, piece) for piece in ("Mail ", "jane@", "x.org")] == [""] * 3
    assert Counting.calls == 0  # no sentence end yet: nothing to redact, no trip to the thread
    assert await engine.feed(output, " today. And") == "Mail <EMAIL_ADDRESS> today. "
    assert Counting.calls == 1
    engine.close()


class _Started:
    """A started check: says what text it began on and whether it was dropped."""

    name = "early"

    def __init__(self, log: list[str], written: str) -> None:
        self.log, self.written = log, written

    def warm_up(self) -> None: ...

    def check(self, text: str, context: Context) -> Verdict:
        self.log.append(f"checked {text!r}, begun on {self.written!r}")
        return Allow(text)

    def abandon(self) -> None:
        self.log.append("abandoned")


class _StartsEarly:
    name = "early"

    def __init__(self) -> None:
        self.log: list[str] = []

    def warm_up(self) -> None: ...

    def start(self, text: str) -> _Started:
        self.log.append(f"started on {text!r}")
        return _Started(self.log, text)

    def check(self, text: str, context: Context) -> Verdict:
        raise AssertionError("a stage that starts early is checked through what start returned")


class _Replace:
    name = "replace"

    def warm_up(self) -> None: ...

    def check(self, text: str, context: Context) -> Verdict:
        if "attack" in text:
            return Block("attack", "no", (Finding("replace", "attack", "block"),))
        return Allow(text.replace("Ann", "<PERSON>"), ("PERSON",))


def test_a_stage_that_starts_early_begins_on_the_text_as_written() -> None:
    early = _StartsEarly()
    verdict = PolicyEngine._apply([_Replace(), early], "Hi, Ann here", Context("input"))
    assert verdict == Allow("Hi, <PERSON> here", ("PERSON",))
    assert early.log == [
        "started on 'Hi, Ann here'",
        "checked 'Hi, <PERSON> here', begun on 'Hi, Ann here'",
    ]


def test_a_started_check_is_abandoned_when_an_earlier_stage_blocks() -> None:
    early = _StartsEarly()
    verdict = PolicyEngine._apply([_Replace(), early], "an attack", Context("input"))
    assert isinstance(verdict, Block) and verdict.reason == "attack"
    assert early.log == ["started on 'an attack'", "abandoned"]
