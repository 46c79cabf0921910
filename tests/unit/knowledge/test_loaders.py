from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from knowledge.chunking import chunk_document
from knowledge.loaders import (
    Document,
    UnreadableDocument,
    document_id,
    load_file,
    load_folder,
)

HELP = Path(__file__).parents[2] / "fixtures" / "kb" / "help"


def test_title_comes_from_first_h1_when_markdown_has_one(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("intro\n\n# Returns policy\n\n## Details\n# Second\n")
    assert load_file(tmp_path / "a.md", tmp_path).title == "Returns policy"


def test_title_is_readable_stem_when_there_is_no_heading(tmp_path: Path) -> None:
    (tmp_path / "refund-policy_v2.md").write_text("## Only a subheading\n\nText.\n")
    (tmp_path / "notes.txt").write_text("# not a heading in a text file\n")
    assert load_file(tmp_path / "refund-policy_v2.md", tmp_path).title == "Refund policy v2"
    assert load_file(tmp_path / "notes.txt", tmp_path).title == "Notes"


def test_front_matter_is_stripped_when_markdown_starts_with_it(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: 'Gift cards'\nlayout: page\n---\nBody text.\n")
    doc = load_file(tmp_path / "a.md", tmp_path)
    assert (doc.title, doc.text) == ("Gift cards", "Body text.\n")


def test_source_is_relative_posix_path_and_id_its_sha1_when_loading_a_folder(
    help_center: Path,
) -> None:
    docs = load_folder(help_center)
    assert [d.source for d in docs] == [
        "account/password-reset.txt",
        "returns.md",
        "shipping/delivery.md",
    ]
    expected = hashlib.sha1(b"shipping/delivery.md").hexdigest()[:16]
    assert docs[2].id == expected
    assert [d.id for d in load_folder(help_center)] == [d.id for d in docs]


def test_hidden_and_unsupported_files_are_skipped_when_walking(help_center: Path) -> None:
    (help_center / ".draft.md").write_text("# Draft\n")
    (help_center / ".git").mkdir()
    (help_center / ".git" / "README.md").write_text("# Git\n")
    (help_center / "logo.png").write_bytes(b"\x89PNG")
    (help_center / "Guide.MARKDOWN").write_text("# Guide\n")
    sources = [d.source for d in load_folder(help_center)]
    assert sources == [
        "Guide.MARKDOWN",
        "account/password-reset.txt",
        "returns.md",
        "shipping/delivery.md",
    ]


def test_single_document_loads_when_path_is_a_file(help_center: Path) -> None:
    (doc,) = load_folder(help_center / "returns.md")
    assert (doc.source, doc.title) == ("returns.md", "Returns policy")


def test_file_not_found_raised_when_folder_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="knowledge folder not found"):
        load_folder(tmp_path / "nope")


def test_value_error_raised_when_folder_has_no_documents(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no documents found under .*\.md"):
        load_folder(tmp_path)


def test_value_error_raised_when_file_type_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "a.docx").write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"unsupported document type '\.docx'"):
        load_file(tmp_path / "a.docx", tmp_path)


def test_unreadable_document_names_the_file_when_text_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(UnreadableDocument, match=r"latin1\.txt: not valid UTF-8"):
        load_file(tmp_path / "latin1.txt", tmp_path)


def test_value_error_counts_unreadable_files_when_no_document_loads(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"no documents found .*1 found but unreadable"):
        load_folder(tmp_path)


def test_bad_files_are_skipped_with_a_warning_when_folder_has_mixed_types(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="knowledge.loaders"):
        docs = load_folder(HELP)
    # .drafts/, .hidden.md and logo.png are never tried; the three bad files are skipped.
    assert [(d.source, d.title) for d in docs] == [
        ("guides/sleeping-bags.html", "Choosing a sleeping bag | Northwind Help"),
        ("manuals/jacket-care.pdf", "Caring for your down jacket"),
        ("manuals/tent-setup.pdf", "Trailhead 2 tent setup guide"),
        ("password-reset.txt", "Password reset"),
        ("returns.md", "Returns policy"),
    ]
    assert [d.id for d in docs] == [document_id(d.source) for d in docs]
    records = [r for r in caplog.records if r.name == "knowledge.loaders"]
    assert {r.levelno for r in records} == {logging.WARNING}
    assert sorted(r.getMessage().split(": ", 1)[0] for r in records) == [
        f"skipped {HELP / name}" for name in ("broken.pdf", "latin1.txt", "locked.pdf")
    ]


def test_pages_are_joined_by_blank_lines_when_loading_a_pdf() -> None:
    doc = load_file(HELP / "manuals" / "tent-setup.pdf", HELP)
    assert (doc.id, doc.source) == (document_id("manuals/tent-setup.pdf"), "manuals/tent-setup.pdf")
    assert doc.text == (
        "Pitching the Trailhead 2 tent\nLay the footprint flat, shiny side up.\n\n"
        "Packing away\nFold the poles from the middle outwards."
    )
    assert [c.heading for c in chunk_document(doc)] == [""]


def test_pdf_title_is_its_first_line_when_metadata_has_no_title() -> None:
    doc = load_file(HELP / "manuals" / "jacket-care.pdf", HELP)
    assert doc.title == "Caring for your down jacket"


def test_unreadable_document_raised_when_pdf_has_no_text_layer(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    writer.write(tmp_path / "scan_0001.pdf")
    with pytest.raises(UnreadableDocument, match=r"scan_0001\.pdf: the PDF has no text layer"):
        load_file(tmp_path / "scan_0001.pdf", tmp_path)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("locked.pdf", "the PDF is password-protected"),
        ("broken.pdf", "not a readable PDF"),
    ],
)
def test_unreadable_document_names_the_file_when_pdf_cannot_be_read(name: str, reason: str) -> None:
    with pytest.raises(UnreadableDocument, match=rf"{name}: {reason}"):
        load_file(HELP / name, HELP)


def test_pdf_is_read_when_encrypted_with_an_empty_user_password(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(HELP / "manuals" / "jacket-care.pdf"))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    writer.write(tmp_path / "no-edit.pdf")
    assert load_file(tmp_path / "no-edit.pdf", tmp_path).title == "Caring for your down jacket"


def test_hash_lines_are_not_headings_when_a_pdf_is_chunked() -> None:
    doc = Document(id="d", title="Sizes", source="sizes.pdf", text="# 1 bestseller\n\nSize M.")
    (chunk,) = chunk_document(doc)
    assert (chunk.heading, chunk.text) == ("", "Sizes\n\n# 1 bestseller\n\nSize M.")
