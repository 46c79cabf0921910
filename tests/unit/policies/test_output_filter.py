"""The output point: stages judge what the stream filter releases, before the user sees it."""

from __future__ import annotations

import pytest

from policies.base import Context
from policies.engine import PolicyEngine
from policies.links import LinkRules, LinkStage
from policies.output import OutputFilter
from policies.pii import PatternRedactor
from policies.schema import PolicyFile, parse_policy
from policies.stream import StreamingRedactor
from policies.verdicts import Allow, Block, Finding, Verdict

OUT = Context("output", channel="web", conversation="c1")


class BlockWord:
    """A stage that blocks any text containing `word` (stands in for toxicity here)."""

    name = "blockword"

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[str] = []

    def warm_up(self) -> None:
        return None

    def check(self, text: str, context: Context) -> Verdict:
        self.seen.append(text)
        if self.word in text:
            return Block("bad word", "policy reply", (Finding(self.name, "word", "block"),))
        return Allow(text)


def feed_all(output: OutputFilter, pieces: list[str]) -> list[str]:
    released = []
    for piece in pieces:
        cuts = output.add(piece)
        released.append(output.release(cuts) if cuts else "")
    released.append(output.flush())
    return released


def test_nothing_of_a_blocked_sentence_is_released_when_a_stage_blocks_mid_answer() -> None:
    stage = BlockWord("darn")
    output = OutputFilter(StreamingRedactor(PatternRedactor(), 400), [stage], OUT)
    pieces = ["Sure, here", " it is. ", "You dar", "n fool, ", "go away. ", "More text."]
    released = feed_all(output, pieces)
    assert "".join(released) == "Sure, here it is. "
    assert not any("dar" in r for r in released)
    assert output.blocked is not None and output.blocked.reply == "policy reply"
    assert output.done
    # After the block, later text is never judged or shown.
    assert not any("More" in seen for seen in stage.seen)


def test_stages_see_redacted_text_when_the_answer_has_pii() -> None:
    stage = BlockWord("4111")  # would fire if a stage ever saw the raw card number
    output = OutputFilter(StreamingRedactor(PatternRedactor(), 400), [stage], OUT)
    released = feed_all(output, ["Card 4111 1111", " 1111 1111 is on file. ", "Bye."])
    assert "".join(released) == "Card <CREDIT_CARD> is on file. Bye."
    assert output.blocked is None


def test_links_are_rewritten_when_they_stream_in_pieces() -> None:
    links = LinkStage(LinkRules(allowed_domains=["northwind.example"]))
    output = OutputFilter(StreamingRedactor(PatternRedactor(), 400), [links], OUT)
    pieces = ["See ![img](https://ev", "il.example/a.png?q=se", "cret) and https://north",
              "wind.example/r now. ", "Bye."]  # fmt: skip
    released = "".join(feed_all(output, pieces))
    assert released == "See  and https://northwind.example/r now. Bye."
    assert [f.rule for f in output.findings] == ["disallowed_image"]


@pytest.mark.parametrize("limit", [20, 35, 60])
def test_answer_is_cut_at_a_word_when_longer_than_the_limit(limit: int) -> None:
    output = OutputFilter(StreamingRedactor(PatternRedactor(), 400), [], OUT, max_chars=limit)
    pieces = ["One two three four. ", "Five six seven eight. ", "Nine ten eleven twelve."]
    released = "".join(feed_all(output, pieces))
    assert output.truncated and released.endswith("…")
    assert len(released) <= limit + 2
    words = released.removesuffix("…").split()
    expected = [
        "One",
        "two",
        "three",
        "four.",
        "Five",
        "six",
        "seven",
        "eight.",
        "Nine",
        "ten",
        "eleven",
    ]
    assert words == expected[: len(words)]


async def test_engine_output_runs_the_files_output_stages_when_fed() -> None:
    policy = parse_policy(
        "version: 1\nlinks:\n  allowed_domains: [northwind.example]\n"
        "limits:\n  max_answer_chars: 50\nstages:\n  output: [pii, links, limits]\n"
    )
    engine = PolicyEngine(policy, PatternRedactor())
    output = engine.output_filter(Context("input", channel="web", conversation="c9"))
    shown = await engine.feed(output, "Mail a@b.io or see https://evil.example/x. ")
    shown += await engine.feed(output, "That is all I know about it, sorry. ")
    shown += await engine.flush(output)
    engine.close()
    assert shown == "Mail <EMAIL_ADDRESS> or see [link removed]. That …"
    assert output.truncated
    counts = engine.audit.counts()
    assert counts[("output", "links", "disallowed_link", "rewrite")] == 1
    assert counts[("output", "pii", "EMAIL_ADDRESS", "redact")] == 1


async def test_each_channel_gets_its_own_pipeline_when_the_file_overrides_it() -> None:
    policy = parse_policy(
        "version: 1\nlimits:\n  max_input_chars: 50\n"
        "stages:\n  input: [limits, pii]\n"
        "channels:\n  web:\n    limits:\n      max_input_chars: 10\n"
    )
    engine = PolicyEngine(policy, PatternRedactor())
    text = "Where is my order?"  # 18 characters
    web = await engine.check_input(text, Context("input", channel="web"))
    rest = await engine.check_input(text, Context("input", channel="rest"))
    engine.close()
    assert isinstance(web, Block) and web.reply == policy.limits.too_long_reply
    assert rest == Allow(text)


def test_unchanged_sections_share_one_stage_when_channels_override_others() -> None:
    policy = parse_policy("version: 1\nchannels:\n  web:\n    limits:\n      max_input_chars: 10\n")
    engine = PolicyEngine(policy, PatternRedactor())
    base, web = engine.pipeline(None), engine.pipeline("web")
    assert base.pii is web.pii  # one redactor (one presidio) for both
    assert base.points["input"][0] is not web.points["input"][0]  # limits differ
    engine.close()


def test_an_output_point_without_pii_still_streams_when_the_file_says_so() -> None:
    policy = PolicyFile.model_validate({"version": 1, "stages": {"output": ["links"]}})
    engine = PolicyEngine(policy, PatternRedactor())
    output = engine.output_filter()
    assert feed_all(output, ["mail a@b.io. ", "bye"]) == ["mail a@b.io. ", "", "bye"]
    engine.close()
