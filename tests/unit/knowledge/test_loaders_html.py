"""HTML pages: main text as Markdown, boilerplate dropped, headings kept for the chunker."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.chunking import chunk_document
from knowledge.loaders import document_id, html_to_markdown, load_file, load_folder

HELP = Path(__file__).parents[2] / "fixtures" / "kb" / "help"
PAGE = HELP / "guides" / "sleeping-bags.html"
# Every piece of boilerplate in the fixture page carries one of these markers.
BOILERPLATE = [
    "NORTHWIND-BANNER",
    "NAV-LINK",
    "BREADCRUMB-TRAIL",
    "TRACKING-SCRIPT",
    ".nav",
    "FEEDBACK-FORM",
    "NOSCRIPT-TEXT",
    "SIDEBAR-PROMO",
    "FOOTER-COPYRIGHT",
]


def test_main_text_becomes_markdown_when_loading_an_html_page() -> None:
    doc = load_file(PAGE, HELP)
    assert (doc.id, doc.source) == (
        document_id("guides/sleeping-bags.html"),
        "guides/sleeping-bags.html",
    )
    assert doc.title == "Choosing a sleeping bag | Northwind Help"
    assert doc.text == (
        "# Choosing a sleeping bag\n\n"
        "Pick a bag rated 5 degrees below the coldest night you expect.\n\n"
        "## Temperature ratings\n\n"
        "The comfort rating is what most sleepers feel warm at.\n"
        "The limit rating is for survival only.\n\n"
        "- Comfort: warm all night\n- Limit: curled up, still cold\n\n"
        "### Down or synthetic?\n\n"
        "Down packs smaller; synthetic stays warm when wet.\n\n"
        "1. Check the rating\n2. Check the weight\n"
    )


def test_navigation_text_is_absent_when_loading_an_html_page() -> None:
    text = load_file(PAGE, HELP).text
    assert [marker for marker in BOILERPLATE if marker in text] == []


def test_chunks_carry_heading_paths_when_an_html_page_is_chunked() -> None:
    chunks = chunk_document(load_file(PAGE, HELP))
    assert [c.heading for c in chunks] == [
        "Choosing a sleeping bag",
        "Choosing a sleeping bag > Temperature ratings",
        "Choosing a sleeping bag > Temperature ratings > Down or synthetic?",
    ]
    assert chunks[2].text.startswith(
        "Choosing a sleeping bag | Northwind Help — Choosing a sleeping bag — "
        "Temperature ratings — Down or synthetic?\n\n"
    )


def test_htm_and_upper_case_suffixes_load_when_walking_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.htm").write_text("<h1>A</h1><p>a</p>")
    (tmp_path / "B.HTML").write_text("<title>B</title><p>b</p>")
    assert [(d.source, d.title) for d in load_folder(tmp_path)] == [("B.HTML", "B"), ("a.htm", "A")]


def test_title_is_readable_stem_when_page_has_no_title_or_h1(tmp_path: Path) -> None:
    (tmp_path / "gift-cards.html").write_text("<h2>Balance</h2><p>Check it online.</p>")
    assert load_file(tmp_path / "gift-cards.html", tmp_path).title == "Gift cards"


def test_meta_charset_decides_the_encoding_when_html_is_not_utf8() -> None:
    html = '<meta charset="iso-8859-1"><p>Café hours</p>'.encode("latin-1")
    assert html_to_markdown(html) == ("Café hours\n", None)


@pytest.mark.parametrize(
    ("html", "text", "title"),
    [
        ("<title> Help </title><h1>Returns</h1>", "# Returns\n", "Help"),
        ("<h1>Returns <em>policy</em></h1>", "# Returns policy\n", "Returns policy"),
        ("<div>OUTSIDE</div><main><p>inside</p></main>", "inside\n", None),
        ("<div>OUTSIDE</div><article><p>inside</p></article>", "inside\n", None),
        ("<article><p>one</p></article><article><p>two</p></article>", "one\n\ntwo\n", None),
        ('<div role="navigation">crumbs</div><p>kept</p>', "kept\n", None),
        ('<ul role="Navigation menu"><li>x</li></ul><p>kept</p>', "kept\n", None),
        ("<header>banner</header><article><header><h1>T</h1></header></article>", "# T\n", "T"),
        ("<article><p>a</p><footer>Was this helpful?</footer></article>", "a\n", None),
        ("<p>#1 bestseller</p>", "\\#1 bestseller\n", None),
        ("<pre>\n$ tent --pitch\n# done\n</pre>", "```\n$ tent --pitch\n# done\n```\n", None),
        (
            "<table><tr><th>Size</th><th>Chest</th></tr><tr><td>M</td><td>96</td></tr></table>",
            "Size | Chest\nM | 96\n",
            None,
        ),
        ("<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "- a\n  - b\n- c\n", None),
        ("<p>one<br>two<br/>three</p>", "one\ntwo\nthree\n", None),
        ("<p>kept<!-- a comment --></p><template><p>hidden</p></template>", "kept\n", None),
        ('<?xml version="1.0"?><html><body><p>xhtml</p></body></html>', "xhtml\n", None),
        ("<nav><p>only navigation</p></nav>", "", None),
    ],
)
def test_markdown_and_title_match_when_html_is_converted(
    html: str, text: str, title: str | None
) -> None:
    assert html_to_markdown(html) == (text, title)
