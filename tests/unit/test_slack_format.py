"""Answers as Slack mrkdwn: escaping, markdown conversion, the sources line, message splits."""

from __future__ import annotations

import re

import pytest

from bot.types import Citation
from connectors.slack.format import escape, sources, split, to_mrkdwn

LINK = "<https://x.example/a|a title with words>"


def _words(pieces: list[str]) -> list[str]:
    return " ".join(pieces).split()


def _check_split(text: str, limit: int) -> list[str]:
    pieces = split(text, limit)
    assert pieces, "a non-empty text gives at least one piece"
    assert all(pieces), f"an empty piece: {pieces!r}"
    assert all(len(piece) <= limit for piece in pieces), [len(p) for p in pieces]
    return pieces


# --- escape -----------------------------------------------------------------------------


def test_escape_replaces_slacks_three_control_characters() -> None:
    assert escape("a < b > c & d") == "a &lt; b &gt; c &amp; d"
    assert escape("<!channel>") == "&lt;!channel&gt;"
    assert escape("&lt;") == "&amp;lt;"  # escaped once, not interpreted
    assert escape("plain *text* | ok") == "plain *text* | ok"
    assert escape("") == ""


# --- to_mrkdwn --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold**", "*bold*"),
        ("__bold__", "*bold*"),
        ("a **b** c __d__ e", "a *b* c *d* e"),
        ("**two words**", "*two words*"),
        ("# Heading", "*Heading*"),
        ("### Heading  ", "*Heading*"),
        ("# Heading\n\nBody text", "*Heading*\n\nBody text"),
        ("Intro\n## Part two\nmore", "Intro\n*Part two*\nmore"),
        ("Body #1 and # not a heading", "Body #1 and # not a heading"),
        ("#hashtag", "#hashtag"),
        ("plain text", "plain text"),
        ("", ""),
    ],
)
def test_to_mrkdwn_bold_and_headings(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[title](https://x.example/a)", "<https://x.example/a|title>"),
        ("see [t](http://x.example/) now", "see <http://x.example/|t> now"),
        ("[HTTP](HTTPS://X.EXAMPLE)", "<HTTPS://X.EXAMPLE|HTTP>"),
        ("[mail](mailto:a@b.example)", "<mailto:a@b.example|mail>"),
        ("[](https://x.example/a)", "<https://x.example/a|https://x.example/a>"),
        (
            "[a](https://x.example/1) and [b](https://x.example/2)",
            "<https://x.example/1|a> and <https://x.example/2|b>",
        ),
        ("**x** [t](https://x.example/) **y**", "*x* <https://x.example/|t> *y*"),
    ],
)
def test_to_mrkdwn_links(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "markdown",
    [
        "[click](javascript:alert(1))",
        "[click](JavaScript:alert(document.cookie))",
        "[click](javascript://x.example/%0aalert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:msgbox)",
        "[x](ftp://x.example/file)",
        "[x](//x.example/a)",
        "[x](/relative/path)",
        "[x](slack://open)",
        "![img](javascript:alert(1))",
        "![img](data:image/png;base64,AAAA)",
        "![img](file:///etc/passwd)",
    ],
)
def test_to_mrkdwn_leaves_unsafe_links_as_text(markdown: str) -> None:
    out = to_mrkdwn(markdown)
    assert "<" not in out and ">" not in out, out
    assert out == escape(markdown)


def test_to_mrkdwn_image_with_http_url_becomes_a_link() -> None:
    assert to_mrkdwn("![a cat](https://x.example/cat.png)") == "<https://x.example/cat.png|a cat>"


@pytest.mark.parametrize(
    "markdown",
    [
        "<!channel>",
        "<!here> please look",
        "<!everyone>",
        "<@U123>",
        "<#C123|general>",
        "<!subteam^S123>",
        "<https://evil.example|totally safe>",
        "**<!channel>**",
        "# <!channel>",
        "[<!channel>](https://x.example/)",
        "[ok](https://x.example/?a=<!channel>)",
        "[ok](https://x.example/<@U123>)",
    ],
)
def test_to_mrkdwn_cannot_ping_or_inject_slack_markup(markdown: str) -> None:
    out = to_mrkdwn(markdown)
    assert not re.search(r"<[!@#]", out), out
    assert "&lt;" in out
    assert "<https://evil.example|" not in out


def test_to_mrkdwn_escapes_ampersands_everywhere() -> None:
    out = to_mrkdwn("Tom & Jerry [A & B](https://x.example/?a=1&b=2)")
    assert out == "Tom &amp; Jerry <https://x.example/?a=1&amp;b=2|A &amp; B>"


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[a|b](https://x.example/a)", "<https://x.example/a|a¦b>"),
        ("[|](https://x.example/a)", "<https://x.example/a|¦>"),
        ("[a||b|](https://x.example/a)", "<https://x.example/a|a¦¦b¦>"),
    ],
)
def test_to_mrkdwn_pipe_in_link_title_does_not_break_the_link(markdown: str, mrkdwn: str) -> None:
    out = to_mrkdwn(markdown)
    assert out == mrkdwn
    assert out.count("|") == 1


def test_to_mrkdwn_pipe_in_link_url_does_not_break_the_link() -> None:
    out = to_mrkdwn("[t](https://x.example/a|b)")
    assert out.count("|") == 1 and out.endswith("|t>")


def test_to_mrkdwn_heading_with_bold_inside() -> None:
    assert "**" not in to_mrkdwn("## **Bold** head")


def test_to_mrkdwn_bold_around_a_link() -> None:
    assert to_mrkdwn("**[T](https://x.example/a)**") == "*<https://x.example/a|T>*"


def test_to_mrkdwn_heading_with_a_link() -> None:
    out = to_mrkdwn("# See [x](https://a.example) now")
    assert "See <https://a.example|x>" in out


# --- sources ----------------------------------------------------------------------------


def test_sources_with_urls() -> None:
    citations = [Citation("Returns", "kb/returns.md"), Citation("Shipping", "kb/ship.md")]
    line = sources(citations, lambda s: f"https://help.example/{s}")
    assert line == (
        "Sources: <https://help.example/kb/returns.md|Returns>"
        " · <https://help.example/kb/ship.md|Shipping>"
    )


def test_sources_without_urls_are_plain_titles() -> None:
    citations = [Citation("Returns", "kb/returns.md"), Citation("", "kb/ship.md")]
    assert sources(citations, lambda s: None) == "Sources: Returns · kb/ship.md"


def test_sources_mixes_linked_and_unlinked() -> None:
    citations = [Citation("A", "kb/a.md"), Citation("B", "https://b.example/page")]
    line = sources(citations, lambda s: s if s.startswith("https://") else None)
    assert line == "Sources: A · <https://b.example/page|B>"


def test_sources_escapes_titles_and_urls() -> None:
    citations = [Citation("<!channel> A|B & C", "kb/a.md")]
    assert sources(citations, lambda s: None) == "Sources: &lt;!channel&gt; A¦B &amp; C"
    linked = sources(citations, lambda s: "https://x.example/?a=1&b=<2>")
    assert linked == (
        "Sources: <https://x.example/?a=1&amp;b=&lt;2&gt;|&lt;!channel&gt; A¦B &amp; C>"
    )


def test_sources_with_empty_url_string_is_plain_title() -> None:
    assert sources([Citation("T", "s")], lambda s: "") == "Sources: T"


def test_sources_of_nothing_is_empty() -> None:
    assert sources([], lambda s: "https://x.example/") == ""


def test_sources_calls_link_with_each_source() -> None:
    seen: list[str] = []

    def link(source: str) -> str | None:
        seen.append(source)
        return None

    sources([Citation("A", "a"), Citation("B", "b")], link)
    assert seen == ["a", "b"]


# --- split ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["short", "exactly ten", "  padded  "])
def test_split_short_text_is_one_piece(text: str) -> None:
    assert split(text, 40) == [text.strip()]


def test_split_text_of_exactly_the_limit_is_one_piece() -> None:
    text = "x" * 50
    assert split(text, 50) == [text]


def test_split_empty_or_blank_text_gives_no_pieces() -> None:
    assert split("", 10) == []
    assert split("   \n\n ", 10) == []


def test_split_cuts_at_paragraphs_first() -> None:
    first = "First paragraph. It has two sentences."
    second = "Second paragraph, also short. Again two."
    pieces = _check_split(f"{first}\n\n{second}", 60)
    assert pieces == [first, second]


def test_split_cuts_at_lines_before_sentences() -> None:
    text = "Line one. Still line one.\nLine two. Still line two."
    assert _check_split(text, 40) == ["Line one. Still line one.", "Line two. Still line two."]


def test_split_cuts_at_sentences_when_no_paragraph_fits() -> None:
    text = "One sentence here. Another one here. A third one here. And the last one."
    pieces = _check_split(text, 40)
    assert pieces[0] == "One sentence here. Another one here."
    assert all(p.endswith(".") for p in pieces)
    assert _words(pieces) == text.split()


def test_split_cuts_after_question_and_exclamation_marks() -> None:
    text = "Is this the first question here? Yes it is! Then comes the end"
    pieces = _check_split(text, 40)
    assert pieces[0] == "Is this the first question here?"
    assert _words(pieces) == text.split()


def test_split_cuts_at_the_last_sentence_end_of_any_kind() -> None:
    text = "One sentence here. Another one here! A question here? And the last one."
    assert split(text, 40)[0] == "One sentence here. Another one here!"


def test_split_cuts_at_words_when_no_sentence_fits() -> None:
    text = " ".join(f"word{i}" for i in range(100))
    pieces = _check_split(text, 37)
    assert len(pieces) > 1
    assert _words(pieces) == text.split()  # no word was cut


@pytest.mark.parametrize("limit", [40, 80, 200, 1000])
def test_split_long_mixed_text_keeps_all_words_in_order(limit: int) -> None:
    paragraphs = [
        " ".join(
            f"Sentence {p}.{s} has some words in it{'?' if s % 3 == 0 else '.'}" for s in range(6)
        )
        for p in range(8)
    ]
    text = "\n\n".join(paragraphs)
    pieces = _check_split(text, limit)
    assert _words(pieces) == text.split()
    if limit >= len(max(paragraphs, key=len)):
        # every paragraph fits, so no piece ends in the middle of a paragraph
        for piece in pieces:
            assert piece.endswith("?") or piece.endswith(".")


@pytest.mark.parametrize("limit", [45, 60, 100, 1000])
def test_split_never_cuts_a_link(limit: int) -> None:
    text = " ".join(["some words before", LINK, "and", LINK, "after the links."] * 4)
    pieces = _check_split(text, limit)
    for piece in pieces:
        assert piece.count("<") == piece.count(">"), piece
        assert not re.search(r"<[^>]*$", piece), piece
        assert not re.search(r"^[^<]*>", piece), piece
    assert _words(pieces) == text.split()


def test_split_moves_a_link_to_the_next_piece_rather_than_cutting_it() -> None:
    text = "one two three four " + LINK + " more"
    assert _check_split(text, 50) == ["one two three four", LINK + " more"]


def test_split_never_cuts_a_link_at_the_start() -> None:
    text = LINK + "b" * 29
    pieces = _check_split(text, 50)
    assert pieces == [LINK, "b" * 29]


def test_split_never_cuts_a_link_that_exactly_fits() -> None:
    text = " ".join(["some words before", LINK, "and", LINK, "after the links."])
    pieces = _check_split(text, len(LINK))
    assert sum(piece.startswith(LINK) for piece in pieces) == 2


def test_split_prefers_an_early_space_to_cutting_a_word() -> None:
    text = "aaaaa " + "b" * 28
    assert split(text, 30) == ["aaaaa", "b" * 28]


@pytest.mark.parametrize("limit", [1, 7, 100, 3000])
def test_split_a_single_huge_word_is_still_cut(limit: int) -> None:
    word = "x" * 10_000
    pieces = _check_split(word, limit)
    assert "".join(pieces) == word
    assert len(pieces) == -(-10_000 // limit)


def test_split_huge_word_among_normal_words() -> None:
    text = "start here " + "y" * 10_000 + " end here"
    pieces = _check_split(text, 500)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    assert pieces[0].startswith("start here")
    assert pieces[-1].endswith("end here")


def test_split_output_of_to_mrkdwn_keeps_links_whole() -> None:
    markdown = "\n\n".join(
        f"**Step {i}.** Read [the guide number {i}](https://help.example/guide/{i}) "
        "and then carry on with the next step, which is just as easy."
        for i in range(20)
    )
    pieces = _check_split(to_mrkdwn(markdown), 120)
    for i in range(20):
        link = f"<https://help.example/guide/{i}|the guide number {i}>"
        assert sum(link in piece for piece in pieces) == 1
