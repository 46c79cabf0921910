"""Index versions: the pointer switch, pruning, readers during writes, and the retriever's
`VersionWatcher` picking up new versions without a restart (with the hashing embedder)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import knowledge.index
from knowledge.chunking import Chunk
from knowledge.embeddings import HashingEmbedder
from knowledge.hybrid import HybridRetriever
from knowledge.index import IndexNotFound, VectorIndex, current_version
from knowledge.ingest import ingest
from knowledge.manifest import IndexManifest
from knowledge.retriever import DenseRetriever, VersionWatcher

EMBEDDER = HashingEmbedder(dim=64)


def write(directory: Path, text: str) -> VectorIndex:
    chunk = Chunk(id="d:0000", doc_id="d", title="T", source="d.md", heading="", text=text)
    return VectorIndex.write(directory, [chunk], EMBEDDER.embed([text]), EMBEDDER.name)


def versions(directory: Path) -> list[str]:
    return sorted(p.name for p in (directory / "versions").iterdir())


def test_current_version_is_none_when_nothing_was_ingested(tmp_path: Path) -> None:
    assert current_version(tmp_path / "index") is None
    index = write(tmp_path / "index", "refund")
    assert current_version(tmp_path / "index") == index.version
    assert re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{6}", index.version)


def test_last_two_versions_kept_when_older_ones_are_past_the_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knowledge.index, "GRACE_SECONDS", -1.0)
    written = [write(tmp_path / "index", f"text {n}").version for n in range(4)]
    assert versions(tmp_path / "index") == written[-2:]


def test_retired_versions_kept_when_within_the_grace_period(tmp_path: Path) -> None:
    written = [write(tmp_path / "index", f"text {n}").version for n in range(4)]
    assert versions(tmp_path / "index") == written


def test_concurrent_writers_files_survive_when_pruning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knowledge.index, "GRACE_SECONDS", -1.0)
    write(tmp_path / "index", "old")
    # A version another writer is about to publish, and a crashed writer's staging folder.
    newer = tmp_path / "index" / "versions" / "99991231T000000000000Z-abcdef"
    newer.mkdir()
    (tmp_path / "index" / "versions" / ".tmp-crashed").mkdir()
    live = write(tmp_path / "index", "new").version
    assert versions(tmp_path / "index")[-2:] == [live, newer.name]


def test_load_reads_the_pointer_again_when_its_version_is_pruned_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write(tmp_path / "index", "old")
    real_read = knowledge.index.read_manifest
    calls: list[str] = []

    def read_then_supersede(directory: Path) -> IndexManifest:
        manifest = real_read(directory)
        if not calls:  # another replica's ingest lands, and prunes, right after our read
            write(tmp_path / "index", "new")
            for version in versions(tmp_path / "index"):
                if version == old.version:
                    (tmp_path / "index" / "versions" / version / "chunks.jsonl").unlink()
        calls.append(manifest.version)
        return manifest

    monkeypatch.setattr(knowledge.index, "read_manifest", read_then_supersede)
    index = VectorIndex.load(tmp_path / "index")
    assert [c.text for c in index.chunks] == ["new"]
    assert calls[0] == old.version != calls[1]


def generation_docs(folder: Path, generation: int) -> None:
    # Every document changes with each generation, so a consistent index has one token.
    for name in ("returns", "shipping", "account"):
        text = f"# {name}\n\n{name} refund rules, edition gen{generation}.\n"
        (folder / f"{name}.md").write_text(text)


def generations(texts: list[str]) -> set[str]:
    return {token for text in texts for token in re.findall(r"gen\d+", text)}


def test_readers_see_whole_versions_when_ingest_writes_new_ones_meanwhile(
    tmp_path: Path,
) -> None:
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    generation_docs(docs, 0)
    ingest(docs, index_dir, EMBEDDER, progress=False)
    retriever = DenseRetriever(index_dir, EMBEDDER, min_score=-1.0, reload_interval=0)
    retriever.warm_up()
    stop, errors, seen, loads = threading.Event(), list[BaseException](), set[str](), list[str]()

    def load_and_search() -> None:
        while not stop.is_set():
            index = VectorIndex.load(index_dir, embedder_name=EMBEDDER.name)
            hits = index.search(EMBEDDER.embed(["refund rules"])[0], k=10)
            assert len(hits) == len(index) == 3
            assert len(generations([c.text for c in index.chunks])) == 1
            loads.append(index.version)

    def retrieve() -> None:
        while not stop.is_set():
            passages = asyncio.run(retriever.search("refund rules", k=10))
            assert len(passages) == 3
            (generation,) = generations([p.text for p in passages])
            seen.add(generation)

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        return run

    threads = [threading.Thread(target=guarded(f)) for f in (load_and_search, retrieve)]
    for thread in threads:
        thread.start()
    try:
        for generation in range(1, 9):
            generation_docs(docs, generation)
            ingest(docs, index_dir, EMBEDDER, progress=False)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    asyncio.run(retriever.search("refund", k=1))
    assert retriever.version == current_version(index_dir)
    assert len(seen) > 1 and len(set(loads)) > 1  # both readers overlapped several writes


@pytest.mark.parametrize("kind", ["dense", "hybrid"])
async def test_retriever_serves_the_new_version_when_one_is_ingested(
    help_center: Path, tmp_path: Path, kind: str
) -> None:
    ingest(help_center, tmp_path / "index", EMBEDDER, progress=False)
    retriever: DenseRetriever | HybridRetriever = (
        DenseRetriever(tmp_path / "index", EMBEDDER, min_score=0.1, reload_interval=0)
        if kind == "dense"
        else HybridRetriever(tmp_path / "index", EMBEDDER, reload_interval=0)
    )
    retriever.warm_up()
    first = retriever.version
    (help_center / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")
    report = ingest(help_center, tmp_path / "index", EMBEDDER, progress=False)

    passages = await retriever.search("do gift cards expire", k=1)
    assert passages[0].citation.source == "gift-cards.md"
    assert retriever.version == report.version != first


def test_watcher_looks_at_most_once_per_interval_when_polled(tmp_path: Path) -> None:
    live = write(tmp_path / "index", "refund").version
    now = [100.0]
    watcher = VersionWatcher(tmp_path / "index", interval=10, clock=lambda: now[0])
    reloads: list[None] = []
    for moment in (100.0, 105.0, 109.9):
        now[0] = moment
        watcher.poll("older", lambda: reloads.append(None))
    assert reloads == []
    now[0] = 110.0
    watcher.poll("older", lambda: reloads.append(None))
    watcher.poll("older", lambda: reloads.append(None))  # checked just now: not again
    now[0] = 130.0
    watcher.poll(live, lambda: reloads.append(None))  # up to date: nothing to do
    assert len(reloads) == 1
    VersionWatcher(tmp_path / "index", interval=None).poll("older", lambda: reloads.append(None))
    assert len(reloads) == 1


async def test_old_version_keeps_serving_when_the_new_one_is_broken(
    help_center: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ingest(help_center, tmp_path / "index", EMBEDDER, progress=False)
    retriever = DenseRetriever(tmp_path / "index", EMBEDDER, min_score=0.1, reload_interval=0)
    retriever.warm_up()
    first = retriever.version
    (help_center / "returns.md").unlink()
    broken = ingest(help_center, tmp_path / "index", EMBEDDER, progress=False).version
    (tmp_path / "index" / "versions" / broken / "embeddings.npy").unlink()

    with caplog.at_level(logging.ERROR, logger="knowledge.retriever"):
        passages = await retriever.search("refund timing 30 days", k=1)
    assert passages[0].citation.source == "returns.md"
    assert retriever.version == first
    assert "could not load the new index version" in caplog.text

    fixed = ingest(help_center, tmp_path / "index", EMBEDDER, progress=False, rebuild=True)
    await retriever.search("refund", k=1)
    assert retriever.version == fixed.version


def test_write_succeeds_when_a_first_write_crashed_before_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knowledge.index, "GRACE_SECONDS", -1.0)
    # What a crash between writing the new pointer and `os.replace` leaves on a first write.
    (tmp_path / "index" / "versions" / "20260101T000000000000Z-abcdef").mkdir(parents=True)
    (tmp_path / "index" / ".manifest.json.tmp-20260101T000000000000Z-abcdef").write_text("{")
    with pytest.raises(IndexNotFound):
        VectorIndex.load(tmp_path / "index")
    index = write(tmp_path / "index", "refund")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["manifest.json", "versions"]
    assert versions(tmp_path / "index")[-1] == index.version
