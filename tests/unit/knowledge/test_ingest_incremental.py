"""Incremental re-ingest: only new and changed documents are embedded, the rest is reused.

`CountingEmbedder` (tests/support.py) wraps the real `HashingEmbedder` and records what it
was asked to embed; the integration suite runs the same path with MiniLM.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge.embeddings import BUILTIN_NAME, HashingEmbedder, Vectors, builtin_model_path
from knowledge.index import VectorIndex, current_version
from knowledge.ingest import ingest
from tests.support import CountingEmbedder


def sources(texts: list[str]) -> set[str]:
    """The document titles of embedded chunk texts (their first line starts with the title)."""
    return {text.split("\n", 1)[0].split(" — ")[0] for text in texts}


def test_only_changed_and_added_documents_are_embedded_when_reingested(
    help_center: Path, tmp_path: Path
) -> None:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    (help_center / "returns.md").write_text("# Returns policy\n\nRefunds now take 14 days.\n")
    (help_center / "account" / "password-reset.txt").unlink()
    (help_center / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")

    counting = CountingEmbedder()
    report = ingest(help_center, tmp_path / "index", counting, progress=False)

    assert (report.added, report.changed, report.unchanged, report.removed) == (1, 1, 1, 1)
    assert sources(counting.texts) == {"Returns policy", "Gift cards"}
    assert report.embedded == len(counting.texts) == 2
    assert (report.documents, report.chunks, report.rebuilt) == (3, 4, False)
    assert report.version == current_version(tmp_path / "index")


def test_incremental_index_equals_a_full_rebuild_when_documents_changed(
    help_center: Path, tmp_path: Path
) -> None:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    (help_center / "shipping" / "delivery.md").write_text("# Shipping\n\nNext-day delivery.\n")
    (help_center / "faq.md").write_text("# FAQ\n\n## Hours\n\nWe answer 9 to 5.\n")
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    ingest(help_center, tmp_path / "full", HashingEmbedder(), progress=False)

    incremental, full = VectorIndex.load(tmp_path / "index"), VectorIndex.load(tmp_path / "full")
    assert incremental.chunks == full.chunks
    np.testing.assert_array_equal(incremental.embeddings, full.embeddings)
    assert incremental.manifest.documents == full.manifest.documents


def test_nothing_is_embedded_or_written_when_nothing_changed(
    help_center: Path, tmp_path: Path
) -> None:
    first = ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    counting = CountingEmbedder()
    report = ingest(help_center, tmp_path / "index", counting, progress=False)
    assert (report.unchanged, report.embedded, counting.batches) == (3, 0, 0)
    assert report.version == first.version == current_version(tmp_path / "index")
    assert len(list((tmp_path / "index" / "versions").iterdir())) == 1


def test_removed_documents_leave_the_index_when_nothing_else_changed(
    help_center: Path, tmp_path: Path
) -> None:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    (help_center / "returns.md").unlink()
    counting = CountingEmbedder()
    report = ingest(help_center, tmp_path / "index", counting, progress=False)
    assert (report.removed, report.unchanged, report.embedded) == (1, 2, 0)
    index = VectorIndex.load(tmp_path / "index")
    assert {c.source for c in index.chunks} == {
        "shipping/delivery.md",
        "account/password-reset.txt",
    }
    assert len(index.manifest.documents) == 2


def test_document_counts_as_changed_when_only_its_front_matter_title_changes(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    article = tmp_path / "docs" / "a.md"
    article.write_text("---\ntitle: Old title\n---\nSome text.\n")
    ingest(tmp_path / "docs", tmp_path / "index", HashingEmbedder(), progress=False)
    article.write_text("---\ntitle: New title\n---\nSome text.\n")
    report = ingest(tmp_path / "docs", tmp_path / "index", HashingEmbedder(), progress=False)
    assert report.changed == 1
    assert VectorIndex.load(tmp_path / "index").chunks[0].title == "New title"


def test_every_chunk_is_embedded_when_rebuild_is_asked(help_center: Path, tmp_path: Path) -> None:
    first = ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    counting = CountingEmbedder()
    report = ingest(help_center, tmp_path / "index", counting, progress=False, rebuild=True)
    assert (report.rebuilt, report.embedded, len(counting.texts)) == (True, 5, 5)
    assert (report.unchanged, report.added, report.changed) == (3, 0, 0)
    assert report.version != first.version


@pytest.mark.parametrize(
    ("embedder", "chunking"),
    [
        (CountingEmbedder(dim=128), {}),
        (CountingEmbedder(), {"max_tokens": 40, "overlap": 10}),
        (CountingEmbedder(), {"tokenizer": str(builtin_model_path())}),
    ],
    ids=["other-model", "other-chunking", "other-tokenizer"],
)
def test_every_chunk_is_embedded_when_model_or_chunking_changes(
    help_center: Path, tmp_path: Path, embedder: CountingEmbedder, chunking: dict[str, Any]
) -> None:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    report = ingest(help_center, tmp_path / "index", embedder, progress=False, **chunking)
    assert report.rebuilt
    assert report.embedded == report.chunks == len(embedder.texts)
    index = VectorIndex.load(tmp_path / "index", embedder_name=embedder.name)
    expected = {"max_tokens": 224, "overlap": 32, "tokenizer": BUILTIN_NAME, **chunking}
    assert index.manifest.chunking == expected


def test_previous_version_serves_when_embedding_crashes_midway(
    help_center: Path, tmp_path: Path
) -> None:
    first = ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    for name in ("returns.md", "shipping/delivery.md"):
        (help_center / name).write_text(f"# {name}\n\nRewritten.\n")
    with pytest.raises(RuntimeError, match="embedding crashed"):
        crashing = CountingEmbedder(fail_on=2)
        ingest(help_center, tmp_path / "index", crashing, progress=False, batch_size=1)
    index = VectorIndex.load(tmp_path / "index")
    assert index.version == first.version == current_version(tmp_path / "index")
    assert "Refund timing" in {c.heading.split(" > ")[-1] for c in index.chunks}
    assert [p.name for p in (tmp_path / "index" / "versions").iterdir()] == [first.version]


def test_progress_bar_counts_only_embedded_chunks_when_reingesting(
    help_center: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    (help_center / "returns.md").write_text("# Returns policy\n\nRefunds take 14 days.\n")
    ingest(help_center, tmp_path / "index", HashingEmbedder())
    assert "1/1" in capsys.readouterr().err


class GatedEmbedder(CountingEmbedder):
    """Holds its first batch until `release` is set, so a second ingest can start meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.entered.set()
        assert self.release.wait(10), "the test never released the first ingest"
        return super().embed(texts)


def test_second_ingest_waits_and_builds_on_the_first_when_they_overlap(
    help_center: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    gated = GatedEmbedder()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(ingest, help_center, index_dir, gated, progress=False)
        assert gated.entered.wait(10)
        (help_center / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")
        counting = CountingEmbedder()
        second = pool.submit(ingest, help_center, index_dir, counting, progress=False)
        time.sleep(0.3)
        # The second ingest is parked on the lock, not embedding against a stale index.
        assert not second.done() and counting.texts == []
        gated.release.set()
        first_report, second_report = first.result(10), second.result(10)
    assert first_report.documents == 3
    # It saw the first's version: only the new article was embedded, nothing rebuilt.
    assert (second_report.added, second_report.unchanged, second_report.rebuilt) == (1, 3, False)
    assert sources(counting.texts) == {"Gift cards"}
    assert current_version(index_dir) == second_report.version
