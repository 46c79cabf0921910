"""Pages listed by URL (a sitemap or a text list), read from a local mirror of the site."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from knowledge.chunking import chunk_document
from knowledge.loaders import (
    UnreadableDocument,
    document_id,
    load_url,
    load_url_list,
    page_path,
    read_url_list,
)

SITE = Path(__file__).parents[2] / "fixtures" / "kb" / "site"
PAGES = SITE / "pages"
POLICY = "https://help.example.com/returns/policy"


def test_pages_load_with_url_sources_when_list_is_a_sitemap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="knowledge.loaders"):
        docs = load_url_list(SITE / "sitemap.xml", PAGES)
    shipping = "https://help.example.com/shipping/"
    # The #refunds duplicate collapses into its page; the unmirrored page is skipped.
    assert [(d.source, d.title, d.id) for d in docs] == [
        (POLICY, "Returns policy", document_id(POLICY)),
        (shipping, "Shipping", document_id(shipping)),
    ]
    (record,) = [r for r in caplog.records if r.name == "knowledge.loaders"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "skipped https://help.example.com/not-mirrored: no copy in the mirror"
    )


def test_navigation_is_dropped_and_headings_chunked_when_loading_a_mirrored_page() -> None:
    doc = load_url(POLICY, PAGES)
    assert "NAV-LINK" not in doc.text and "FOOTER-COPYRIGHT" not in doc.text
    assert [(c.heading, c.source) for c in chunk_document(doc)] == [
        ("Returns policy", POLICY),
        ("Returns policy > Refunds", POLICY),
    ]


def test_ids_are_stable_and_url_based_when_a_list_is_loaded_twice() -> None:
    first = [d.id for d in load_url_list(SITE / "urls.txt", PAGES)]
    assert first == [d.id for d in load_url_list(SITE / "urls.txt", PAGES)]
    assert document_id("returns/policy.html") not in first


def test_comments_and_blank_lines_are_ignored_when_list_is_a_text_file() -> None:
    assert read_url_list(SITE / "urls.txt") == [POLICY, "https://help.example.com/shipping"]


@pytest.mark.parametrize(
    ("url", "relative"),
    [
        (POLICY, "returns/policy.html"),
        (POLICY + "?lang=en", "returns/policy.html"),
        ("https://help.example.com/returns/policy.html", "returns/policy.html"),
        ("https://help.example.com/shipping", "shipping/index.html"),
        ("http://help.example.com/shipping/", "shipping/index.html"),
        ("https://help.example.com/care%20guide", "care guide.htm"),
        ("https://help.example.com", "index.html"),
        ("https://help.example.com/manuals/tent.pdf", "manuals/tent.pdf"),
    ],
)
def test_url_maps_to_its_mirror_file_when_the_file_exists(
    tmp_path: Path, url: str, relative: str
) -> None:
    for name in ["returns/policy.html", "shipping/index.html", "care guide.htm", "index.html"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("<p>page</p>")
    (tmp_path / "manuals").mkdir()
    (tmp_path / "manuals" / "tent.pdf").write_bytes(b"%PDF")
    assert page_path(url, tmp_path) == tmp_path / relative


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://help.example.com/returns/policy", "not an http"),
        ("returns/policy", "not an http"),
        ("https://help.example.com/../secrets", "must not contain"),
        ("https://help.example.com/a/%2e%2e/%2e%2e/secrets", "must not contain"),
        ("https://help.example.com/missing", "no copy in the mirror"),
    ],
)
def test_unreadable_document_raised_when_url_has_no_safe_mirror_file(url: str, reason: str) -> None:
    with pytest.raises(UnreadableDocument, match=reason):
        page_path(url, PAGES)


def test_value_error_raised_when_no_listed_page_is_mirrored(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("https://help.example.com/missing\n")
    with pytest.raises(ValueError, match=r"none of the 1 URLs in .*urls\.txt has a page"):
        load_url_list(tmp_path / "urls.txt", PAGES)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<urlset><url><loc>https://a.example/x", "not a valid sitemap"),
        (
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap>'
            "<loc>https://a.example/sitemap-1.xml</loc></sitemap></sitemapindex>",
            "a sitemap index",
        ),
    ],
)
def test_value_error_raised_when_sitemap_cannot_be_used(
    tmp_path: Path, xml: str, message: str
) -> None:
    (tmp_path / "sitemap.xml").write_text(xml)
    with pytest.raises(ValueError, match=message):
        read_url_list(tmp_path / "sitemap.xml")
