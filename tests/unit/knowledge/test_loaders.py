from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from knowledge.loaders import load_file, load_folder


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
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    with pytest.raises(ValueError, match=r"unsupported document type '\.pdf'"):
        load_file(tmp_path / "a.pdf", tmp_path)


def test_value_error_names_the_file_when_text_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not valid UTF-8"):
        load_folder(tmp_path)
