from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from knowledge.chunking import Chunk
from knowledge.embeddings import HashingEmbedder
from knowledge.index import (
    EmbedderMismatch,
    IndexCorrupt,
    IndexNotFound,
    VectorIndex,
    current_version,
)
from knowledge.loaders import Document

EMBEDDER = HashingEmbedder(dim=32)


def make_chunks(*texts: str) -> list[Chunk]:
    return [
        Chunk(
            id=f"doc{i}:0000",
            doc_id=f"doc{i}",
            title=f"T{i}",
            source=f"{i}.md",
            heading="",
            text=text,
        )
        for i, text in enumerate(texts)
    ]


def live(directory: Path) -> Path:
    version = current_version(directory)
    assert version
    return directory / "versions" / version


def write(directory: Path, *texts: str) -> VectorIndex:
    chunks = make_chunks(*texts)
    return VectorIndex.write(directory, chunks, EMBEDDER.embed(texts), EMBEDDER.name)


def test_chunks_and_vectors_round_trip_when_written_and_loaded(tmp_path: Path) -> None:
    chunks = make_chunks("refund in 30 days", "shipping takes 3-5 business days")
    docs = [Document(id="doc0", title="T0", source="0.md", text="# T0\nrefund in 30 days")]
    vectors = EMBEDDER.embed([c.text for c in chunks])
    VectorIndex.write(tmp_path / "index", chunks, vectors, EMBEDDER.name, documents=docs)

    index = VectorIndex.load(tmp_path / "index", embedder_name=EMBEDDER.name)
    assert index.chunks == chunks
    np.testing.assert_array_equal(index.embeddings, vectors)
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    assert manifest["version"] == index.version
    assert sorted(p.name for p in (tmp_path / "index" / "versions" / index.version).iterdir()) == [
        "chunks.jsonl",
        "embeddings.npy",
        "manifest.json",
    ]
    assert (manifest["embedding_model"], manifest["dim"], manifest["chunk_count"]) == (
        "hashing-bow-32",
        32,
        2,
    )
    assert manifest["created"].endswith("+00:00")
    assert len(manifest["documents"]["doc0"]["sha256"]) == 64
    assert manifest["documents"]["doc0"]["chunks"] == 1
    assert manifest["documents"]["doc1"] == {
        "source": "1.md",
        "title": "T1",
        "sha256": None,
        "chunks": 1,
    }


def test_results_are_best_first_and_capped_when_searching(tmp_path: Path) -> None:
    index = write(tmp_path / "i", "refund card days", "refund card", "password reset", "refund")
    hits = index.search(EMBEDDER.embed(["refund card"])[0], k=3)
    assert [c.text for c, _ in hits] == ["refund card", "refund card days", "refund"]
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(1.0)
    assert len(index.search(EMBEDDER.embed(["refund"])[0], k=10)) == 4
    assert index.search(EMBEDDER.embed(["refund"])[0], k=0) == []


def test_low_scores_are_dropped_when_min_score_is_set(tmp_path: Path) -> None:
    index = write(tmp_path / "i", "refund card", "password reset")
    hits = index.search(EMBEDDER.embed(["refund"])[0], k=5, min_score=0.3)
    assert [c.text for c, _ in hits] == ["refund card"]


def test_value_error_when_query_dimension_differs(tmp_path: Path) -> None:
    index = write(tmp_path / "i", "refund")
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(8, dtype=np.float32), k=1)


def test_previous_index_survives_when_writing_fails_midway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "index", "old refund policy")

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path / "index", "new refund policy", "new shipping policy")
    monkeypatch.undo()

    index = VectorIndex.load(tmp_path / "index")
    assert [c.text for c in index.chunks] == ["old refund policy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    # No staging left behind: only the live version.
    assert [p.name for p in (tmp_path / "index" / "versions").iterdir()] == [index.version]


def test_previous_index_serves_when_pointer_switch_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write(tmp_path / "index", "old")

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        raise OSError("replace failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="replace failed"):
        write(tmp_path / "index", "new")
    monkeypatch.undo()
    index = VectorIndex.load(tmp_path / "index")
    assert ([c.text for c in index.chunks], index.version) == (["old"], old.version)
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["manifest.json", "versions"]


def test_format_1_index_serves_and_is_replaced_when_written_again(tmp_path: Path) -> None:
    # What Switchboard wrote before versions: files beside the manifest, no version.
    new = write(tmp_path / "new", "old")
    legacy = tmp_path / "index"
    shutil.copytree(tmp_path / "new" / "versions" / new.version, legacy)
    data = json.loads((legacy / "manifest.json").read_text())
    del data["version"], data["chunking"]
    (legacy / "manifest.json").write_text(json.dumps({**data, "format_version": 1}))
    assert current_version(legacy) == ""
    assert [c.text for c in VectorIndex.load(legacy).chunks] == ["old"]

    index = write(legacy, "new")
    assert [c.text for c in VectorIndex.load(legacy).chunks] == ["new"]
    assert sorted(p.name for p in legacy.iterdir()) == ["manifest.json", "versions"]
    assert current_version(legacy) == index.version


def test_retired_format_1_index_serves_when_its_swap_was_interrupted(tmp_path: Path) -> None:
    new = write(tmp_path / "new", "old")
    # What a crash of the format-1 writer between "rename old aside" and "rename new in" left.
    retired = tmp_path / ".index.old-1234abcd"
    shutil.copytree(tmp_path / "new" / "versions" / new.version, retired)
    data = json.loads((retired / "manifest.json").read_text())
    (retired / "manifest.json").write_text(json.dumps({**data, "version": ""}))
    assert [c.text for c in VectorIndex.load(tmp_path / "index").chunks] == ["old"]
    write(tmp_path / "index", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "new"]


def test_load_refused_when_embedding_model_differs(tmp_path: Path) -> None:
    write(tmp_path / "index", "refund")
    with pytest.raises(EmbedderMismatch, match=r"'hashing-bow-32'.*'other-model'") as info:
        VectorIndex.load(tmp_path / "index", embedder_name="other-model")
    assert isinstance(info.value, ValueError)
    assert "switchboard kb ingest" in str(info.value)


def test_error_tells_to_ingest_when_index_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"run `switchboard kb ingest PATH` first"):
        VectorIndex.load(tmp_path / "index")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFound, match=r"no manifest\.json"):
        VectorIndex.load(tmp_path / "empty")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: (d / "manifest.json").write_text("{not json"), r"unreadable manifest\.json"),
        (
            lambda d: (d / "manifest.json").write_text(
                '{"format_version": 99, "embedding_model": "x", "dim": 1, "chunk_count": 1, '
                '"created": ""}'
            ),
            "format version 99",
        ),
        (lambda d: (live(d) / "chunks.jsonl").write_text(""), "0 chunks"),
        (lambda d: (live(d) / "embeddings.npy").unlink(), r"embeddings\.npy"),
        (lambda d: shutil.rmtree(live(d)), r"chunks\.jsonl"),
        (
            lambda d: (d / "manifest.json").write_text(
                (d / "manifest.json").read_text().replace('"version": "', '"version": "../')
            ),
            "invalid version",
        ),
    ],
    ids=[
        "bad-json",
        "future-format",
        "truncated-chunks",
        "missing-embeddings",
        "missing-version",
        "escaping-version",
    ],
)
def test_corrupt_error_when_index_files_are_damaged(
    tmp_path: Path, damage: Callable[[Path], object], reason: str
) -> None:
    write(tmp_path / "index", "refund", "shipping")
    damage(tmp_path / "index")
    with pytest.raises(IndexCorrupt, match=reason) as info:
        VectorIndex.load(tmp_path / "index")
    assert "run `switchboard kb ingest PATH` again" in str(info.value)


def test_write_refused_when_directory_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "precious.md").write_text("keep me")
    with pytest.raises(ValueError, match="not a knowledge index"):
        write(tmp_path / "docs", "refund")
    assert (tmp_path / "docs" / "precious.md").read_text() == "keep me"


def test_write_refused_when_embeddings_do_not_match_chunks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not fit 2 chunks"):
        VectorIndex.write(tmp_path / "i", make_chunks("a", "b"), np.ones((3, 4)), "m")
    with pytest.raises(ValueError, match="NaN"):
        VectorIndex.write(tmp_path / "i", make_chunks("a"), np.full((1, 4), np.nan), "m")
