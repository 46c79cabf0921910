"""`switchboard eval`: scripted conversations run through the real pipeline, checked per turn.

A suite file (YAML, validated like the policy file: every error names its line) lists
conversations; each turn is a customer message and what its answer must show:

    version: 1
    conversations:
      - name: returns
        turns:
          - user: How long do I have to return boots?
            expect: {contains: "30 days", cites: returns-policy.md, max_seconds: 60}

The runner sends each conversation's turns to `ConversationManager.respond` under one
conversation id, records the final `Message` (text already redacted by the pipeline), the
stored user turn and the latency, and checks every expectation. Reports: plain text,
JSON, and JUnit XML for CI. Exit codes (the CLI's): 0 every expectation held, 1 one failed,
2 the suite could not run (bad file, bad settings, no knowledge index).
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictBool, field_validator

from bot.errors import ConfigError, SwitchboardError
from bot.types import Accepted, Citation, InboundMessage, Message, Notice, Token, new_id
from policies.base import Strict
from policies.pii_rules import NonEmptyText

# Private to the policy schema, but it is the one place that turns a pydantic error into
# (line, location, reason); a second copy would drift from the policy file's wording.
from policies.yaml_lines import Problem, YamlFileError, validate_yaml

if TYPE_CHECKING:
    from bot.manager import ConversationManager
    from bot.settings import Settings

EXIT_PASSED, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def _listed(value: object) -> object:
    """One string or a list of them: `contains: "30 days"` means `contains: ["30 days"]`."""
    return [value] if isinstance(value, str) else value


Texts = Annotated[list[NonEmptyText], BeforeValidator(_listed)]
EntityTypes = Annotated[
    list[Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]], BeforeValidator(_listed)
]


class Expect(Strict):
    """What one turn's answer must show; every key is optional and all given must hold."""

    contains: Texts = Field(default_factory=list)  # all of them, case ignored
    contains_any: Texts = Field(default_factory=list)  # at least one
    not_contains: Texts = Field(default_factory=list)  # none of them
    cites: Texts = Field(default_factory=list)  # article file names or titles, all cited
    abstains: StrictBool | None = None  # the bot said it does not know (kind no_answer)
    hands_off: StrictBool | None = None  # the conversation should go to a person
    redacts: EntityTypes = Field(default_factory=list)  # stored user text shows <TYPE>
    blocked: StrictBool | None = None  # a policy blocked the message or the answer
    max_seconds: float | None = Field(None, gt=0, strict=True)  # the turn's latency
    kind: Literal["", "action", "no_answer", "blocked", "fallback"] | None = None


class ScriptedTurn(Strict):
    """One customer message and its expectations."""

    user: NonEmptyText
    expect: Expect = Field(default_factory=Expect)


class Conversation(Strict):
    """Turns sent one after the other in one conversation (the bot sees the history)."""

    name: NonEmptyText
    channel: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")] = "eval"
    turns: list[ScriptedTurn] = Field(min_length=1)


class Suite(Strict):
    """A suite file: `version: 1` and its conversations."""

    version: Literal[1]
    conversations: list[Conversation] = Field(min_length=1)

    @field_validator("conversations")
    @classmethod
    def _unique(cls, conversations: list[Conversation]) -> list[Conversation]:
        seen: set[str] = set()
        for conversation in conversations:
            if conversation.name in seen:
                raise ValueError(f"two conversations are named {conversation.name!r}")
            seen.add(conversation.name)
        return conversations


class SuiteFileError(YamlFileError):
    """A suite file is unusable; `.errors` holds (line, location, reason) for each problem."""

    code = "suite_file_error"


def parse_suite(text: str, filename: str = "<suite>") -> Suite:
    """Validate suite YAML `text`; raise `SuiteFileError` listing every problem."""
    expected = "a mapping with 'version: 1' and 'conversations'"
    return validate_yaml(text, Suite, filename, SuiteFileError, expected)[0]


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (UTF-8). `OSError` propagates for unreadable files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteFileError(str(path), [Problem(1, "(file)", "not UTF-8 text")]) from exc
    return parse_suite(text, str(path))


# --- running ------------------------------------------------------------------------------


@dataclass(slots=True)
class Observed:
    """What one turn did: the final message's fields, the stored user text, the latency."""

    text: str = ""  # the answer as the customer saw it (redacted by the output policy)
    kind: str = ""
    citations: tuple[Citation, ...] = ()
    handoff: str = ""
    stored_user: str = ""  # the user message as stored (redacted)
    seconds: float = 0.0
    notices: tuple[str, ...] = ()
    error: str = ""  # a fault ended the turn without a final message


@dataclass(slots=True)
class TurnResult:
    """One checked turn: its number (from 1), the suite's message, what happened, what failed."""

    index: int
    user: str
    observed: Observed
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class ConversationResult:
    name: str
    turns: list[TurnResult] = field(default_factory=list)


@dataclass(slots=True)
class SuiteResult:
    """Every conversation's results and the wall time of the run."""

    conversations: list[ConversationResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def turns(self) -> list[TurnResult]:
        return [t for c in self.conversations for t in c.turns]

    @property
    def failed(self) -> int:
        return sum(1 for t in self.turns if not t.passed)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_PASSED


OnTurn = Callable[[str, TurnResult], None]


async def run_suite(
    suite: Suite, manager: ConversationManager, on_turn: OnTurn | None = None
) -> SuiteResult:
    """Run every conversation in order; `on_turn(conversation name, result)` after each turn."""
    began = time.perf_counter()
    result = SuiteResult()
    for conversation in suite.conversations:
        done = ConversationResult(conversation.name)
        result.conversations.append(done)
        conversation_id: str | None = None
        for index, turn in enumerate(conversation.turns, start=1):
            observed, conversation_id = await _run_turn(
                manager, turn.user, conversation.channel, conversation_id
            )
            checked = TurnResult(
                index, turn.user, observed, check(turn.expect, turn.user, observed)
            )
            done.turns.append(checked)
            if on_turn is not None:
                on_turn(conversation.name, checked)
    result.seconds = time.perf_counter() - began
    return result


async def _run_turn(
    manager: ConversationManager, text: str, channel: str, conversation_id: str | None
) -> tuple[Observed, str | None]:
    inbound = InboundMessage(text, channel, conversation_id, client_message_id=new_id())
    observed, accepted, notices, final = Observed(), None, [], False
    started = time.perf_counter()
    try:
        async with aclosing(manager.respond(inbound)) as events:
            async for event in events:
                if isinstance(event, Accepted):
                    accepted, conversation_id = event, event.conversation_id
                elif isinstance(event, Notice):
                    notices.append(event.code)
                elif isinstance(event, Message):
                    final = True
                    observed.text, observed.kind = event.text, event.kind
                    observed.citations, observed.handoff = event.citations, event.handoff
                    conversation_id = event.conversation_id
                elif not isinstance(event, Token):
                    observed.error = f"unexpected event {type(event).__name__}"
    except SwitchboardError as exc:  # a fault (busy, too long...) fails the turn, not the run
        observed.error = f"{exc.code}: {exc.message}"
    observed.seconds = time.perf_counter() - started
    observed.notices = tuple(notices)
    if not final and not observed.error:  # e.g. a person handles the conversation now
        observed.error = "the turn ended without a final message"
    if accepted is not None:
        observed.stored_user = accepted.text
        for stored in await manager.store.history(accepted.conversation_id):
            if stored.message_id == accepted.message_id:  # what was really kept
                observed.stored_user = stored.text
    return observed, conversation_id


# --- checking -----------------------------------------------------------------------------

# <EMAIL_ADDRESS>, and the hash and pseudonym forms <EMAIL_ADDRESS:3f9a..>, <EMAIL_ADDRESS_3f9a0c>
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)(?:[:_][0-9a-f]{6,})?>")


def check(expect: Expect, user: str, seen: Observed) -> list[str]:
    """Every expectation of `expect` that `seen` breaks, each saying expected and actual."""
    if seen.error:
        return [f"the turn failed: {seen.error}"]
    answer, lowered = _short(seen.text), seen.text.lower()
    failures = [
        f"expected {p!r} in the answer; got {answer}"
        for p in expect.contains
        if p.lower() not in lowered
    ]
    if expect.contains_any and not any(p.lower() in lowered for p in expect.contains_any):
        failures.append(f"expected one of {expect.contains_any!r} in the answer; got {answer}")
    failures += [
        f"expected no {p!r} in the answer; got {answer}"
        for p in expect.not_contains
        if p.lower() in lowered
    ]
    cited = [c.source for c in seen.citations]
    failures += [
        f"expected a citation of {want!r}; cited {cited or 'nothing'}"
        for want in expect.cites
        if not _cites(seen.citations, want)
    ]
    flags = (
        ("abstains", expect.abstains, seen.kind == "no_answer", "say it does not know"),
        ("hands_off", expect.hands_off, bool(seen.handoff), "hand off to a person"),
        ("blocked", expect.blocked, seen.kind == "blocked", "be blocked"),
    )
    for name, wanted, actual, doing in flags:
        if wanted is not None and wanted != actual:
            failures.append(
                f"{name}: expected the turn {'' if wanted else 'not '}to {doing}; {_what(seen)}"
            )
    if expect.kind is not None and seen.kind != expect.kind:
        failures.append(f"kind: expected {expect.kind!r}; got {seen.kind!r}")
    if expect.max_seconds is not None and seen.seconds > expect.max_seconds:
        failures.append(f"took {seen.seconds:.1f}s; expected at most {expect.max_seconds:g}s")
    failures += [_redaction(entity, user, seen) for entity in expect.redacts]
    return [f for f in failures if f]


def _cites(citations: tuple[Citation, ...], wanted: str) -> bool:
    wanted = wanted.lower()
    for citation in citations:
        names = {citation.title.lower(), citation.source.lower()}
        names.add(citation.source.lower().rstrip("/").rsplit("/", 1)[-1])
        if wanted in names:
            return True
    return False


def _what(seen: Observed) -> str:
    handoff = f", handoff {seen.handoff!r}" if seen.handoff else ""
    return f"got kind {seen.kind or 'answer'!r}{handoff}: {_short(seen.text)}"


def _redaction(entity: str, user: str, seen: Observed) -> str:
    """ "" when the stored user message shows `<entity>` and no raw value of that type."""
    stored = seen.stored_user
    shown = PLACEHOLDER.findall(stored)
    if entity not in shown:
        # Not the stored text itself: where redaction failed, it holds the raw value.
        found = ", ".join(f"<{e}>" for e in shown) or "no placeholder"
        return f"redacts {entity}: expected <{entity}> in the stored message; it shows {found}"
    # The raw values are what the placeholders stand for: line the stored text up with the
    # message sent. They are never printed; a report must not carry them either.
    parts = PLACEHOLDER.split(stored)
    pattern = "".join(re.escape(p) if i % 2 == 0 else "(.+?)" for i, p in enumerate(parts))
    matched = re.fullmatch(pattern, user.strip(), re.DOTALL)
    if matched is None:  # the stored text was changed in other ways too: the placeholder is all
        return ""
    raws = [v for e, v in zip(parts[1::2], matched.groups(), strict=True) if e == entity]
    if any(raw in stored for raw in raws):
        return f"redacts {entity}: a raw {entity} value is still in the stored message"
    if any(raw.lower() in seen.text.lower() for raw in raws):
        return f"redacts {entity}: the answer repeats the raw {entity} value"
    return ""


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --- reporting ----------------------------------------------------------------------------


def render_turn(turn: TurnResult) -> str:
    """`  ✓ turn 1: question (2.3s)`, and one indented line per failure."""
    mark = "✓" if turn.passed else "✗"
    lines = [
        f"  {mark} turn {turn.index}: {_short(turn.user, 70)[1:-1]} ({turn.observed.seconds:.1f}s)"
    ]
    lines += [f"      - {failure}" for failure in turn.failures]
    return "\n".join(lines)


def render_summary(result: SuiteResult) -> str:
    turns, failed = len(result.turns), result.failed
    conversations = sum(1 for c in result.conversations if all(t.passed for t in c.turns))
    verdict = "FAILED" if failed else "passed"
    return (
        f"{verdict}: {turns - failed}/{turns} turns passed, {conversations}/"
        f"{len(result.conversations)} conversations, in {result.seconds:.1f}s"
    )


def render_report(result: SuiteResult) -> str:
    """The whole readable report: each conversation, its turns, and the summary."""
    lines: list[str] = []
    for conversation in result.conversations:
        lines.append(conversation.name)
        lines += [render_turn(turn) for turn in conversation.turns]
    lines.append(render_summary(result))
    return "\n".join(lines)


def result_json(result: SuiteResult) -> dict[str, Any]:
    """The results as JSON-ready data (answer texts as the pipeline redacted them)."""
    return {
        "passed": not result.failed,
        "turns": len(result.turns),
        "failed": result.failed,
        "seconds": round(result.seconds, 3),
        "conversations": [
            {
                "name": c.name,
                "turns": [
                    {
                        "turn": t.index,
                        "user": t.user,
                        "answer": t.observed.text,
                        "kind": t.observed.kind,
                        "citations": [x.source for x in t.observed.citations],
                        "handoff": t.observed.handoff,
                        "seconds": round(t.observed.seconds, 3),
                        "failures": t.failures,
                    }
                    for t in c.turns
                ],
            }
            for c in result.conversations
        ],
    }


# XML 1.0 cannot carry these characters at all, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(result: SuiteResult, name: str = "switchboard eval") -> bytes:
    """JUnit XML: one testsuite, one testcase per turn (classname: the conversation)."""
    turns = result.turns
    root = ET.Element("testsuites", tests=str(len(turns)), failures=str(result.failed))
    root.set("time", f"{result.seconds:.3f}")
    suite = ET.SubElement(root, "testsuite", name=_xml(name), tests=str(len(turns)))
    suite.set("failures", str(result.failed))
    suite.set("errors", "0")
    suite.set("time", f"{result.seconds:.3f}")
    for conversation in result.conversations:
        for turn in conversation.turns:
            case = ET.SubElement(suite, "testcase", classname=_xml(conversation.name))
            case.set("name", _xml(f"turn {turn.index}: {turn.user}"))
            case.set("time", f"{turn.observed.seconds:.3f}")
            if turn.failures:
                failure = ET.SubElement(case, "failure", message=_xml(turn.failures[0]))
                failure.text = _xml("\n".join(turn.failures) + f"\nanswer: {turn.observed.text}")
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


async def run_with_settings(
    settings: Settings, suite: Suite, on_turn: OnTurn | None = None
) -> SuiteResult:
    """Build and start the pipeline `settings` describe, run `suite`, close it.

    Raises `ConfigError` when the knowledge index cannot be loaded: the pipeline would
    answer without passages, and every result would mislead."""
    from bot.components import build_components

    parts = build_components(settings)
    try:
        await parts.start()
        if parts.knowledge_error:
            raise ConfigError(
                f"knowledge base unavailable: {parts.knowledge_error} "
                "(index the help center with `switchboard kb ingest`)"
            )
        return await run_suite(suite, parts.manager, on_turn)
    finally:
        await parts.close()
