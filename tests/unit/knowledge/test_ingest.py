from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.embeddings import HashingEmbedder
from knowledge.index import VectorIndex
from knowledge.ingest import ingest


def test_index_holds_every_chunk_when_folder_is_ingested(
    help_center: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embedder = HashingEmbedder()
    report = ingest(help_center, tmp_path / "index", embedder, progress=False, batch_size=2)

    index = VectorIndex.load(tmp_path / "index", embedder_name=embedder.name)
    assert (report.documents, report.chunks) == (3, len(index)) == (3, 5)
    assert report.seconds > 0
    assert {c.source for c in index.chunks} == {
        "returns.md",
        "shipping/delivery.md",
        "account/password-reset.txt",
    }
    assert len(index.manifest.documents) == 3
    assert capsys.readouterr().err == ""  # progress=False: no bar


def test_progress_bar_shown_when_progress_is_on(
    help_center: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(help_center, tmp_path / "index", HashingEmbedder())
    assert "Embedding" in capsys.readouterr().err


def test_reingest_replaces_index_when_documents_change(help_center: Path, tmp_path: Path) -> None:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    (help_center / "returns.md").unlink()
    report = ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    index = VectorIndex.load(tmp_path / "index")
    assert report.documents == 2
    assert "returns.md" not in {c.source for c in index.chunks}


def test_value_error_when_documents_are_empty(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "blank.md").write_text("\n\n")
    with pytest.raises(ValueError, match="contain no text"):
        ingest(tmp_path / "docs", tmp_path / "index", HashingEmbedder(), progress=False)
    assert not (tmp_path / "index").exists()
