"""Retrieval quality and speed: BM25-only, dense-only and hybrid side by side.

    .venv/bin/python bench/retrieval.py [--kb DIR] [--questions FILE] [--queries N]

Quality on a labelled set (default: the TechQA sample in /work/shared/eval/techqa): hit@1,
hit@5, MRR@10 over all answerable questions; abstention AUROC of the plain top-1 cosine and
of the calibrated model (knowledge/abstain.json) on the held-out half of `evaluate.split`
(the half the shipped model was not fitted on). Every mode computes the same abstention
features, so the AUROC columns repeat across rows.

Speed: query latency (embedding included, and the embedding alone beside it) at 1k, 10k
and 100k chunks, and ingest throughput. Chunks beyond the real ones are real chunks with
their sentences shuffled, four to an article, with random unit vectors as embeddings (only
their count matters for speed). Prints figures; not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from knowledge.abstain import AbstentionModel
from knowledge.chunking import Chunk
from knowledge.embeddings import MiniLMEmbedder, Vectors, query_text
from knowledge.evaluate import load_questions, run_questions, split, summarize
from knowledge.hybrid import HybridRetriever
from knowledge.index import VectorIndex
from knowledge.ingest import ingest

TECHQA = Path("/work/shared/eval/techqa")
VARIANTS: dict[str, dict[str, object]] = {
    "bm25": {"mode": "bm25"},
    "dense": {"mode": "dense"},
    "hybrid (default: z .7)": {},
    "hybrid (RRF k=60)": {"fusion": "rrf"},
    "hybrid (z, no cap)": {"max_per_doc": None},
    "hybrid (z + MMR .7)": {"mmr_lambda": 0.7, "max_per_doc": None},
}


class CachedEmbedder:
    """MiniLM with a memo, so quality variants embed each question once."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self._inner = inner
        self._memo: dict[str, np.ndarray] = {}
        self.name, self.dim = inner.name, inner.dim

    def warm_up(self) -> None:
        self._inner.warm_up()

    def embed_query_text(self, query: str) -> str:
        return self._inner.embed_query_text(query)

    def embed(self, texts: list[str]) -> Vectors:
        missing = [t for t in texts if t not in self._memo]
        if missing:
            self._memo.update(zip(missing, self._inner.embed(missing), strict=True))
        return np.stack([self._memo[t] for t in texts])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def quality(index_dir: Path, questions_file: Path, embedder: CachedEmbedder) -> None:
    questions = load_questions(questions_file)
    _, held_out = split(questions)
    held = {q.id for q in held_out}
    model = AbstentionModel.load()
    print(
        f"\n## quality: {len(questions)} questions ({sum(q.answerable for q in questions)} "
        f"answerable); AUROC on the {len(held_out)} held out ({model.note})"
    )
    print(
        f"{'retriever':<24} {'hit@1':>6} {'hit@5':>6} {'MRR@10':>7} "
        f"{'AUROC cos':>9} {'AUROC cal':>9} {'abst|unans':>10} {'ans|ans':>8}"
    )
    for name, options in VARIANTS.items():
        retriever = HybridRetriever(index_dir, embedder, **options)  # type: ignore[arg-type]
        retriever.warm_up()
        outcomes = asyncio.run(run_questions(retriever, questions, 5))
        ranking = summarize(outcomes, 5)
        abstain = summarize([o for o in outcomes if o.question.id in held], 5, model)
        print(
            f"{name:<24} {ranking.hit_at_1:>6.3f} {ranking.hit_at_k:>6.3f} "
            f"{ranking.mrr_at_10:>7.3f} {abstain.baseline_auroc:>9.3f} {abstain.auroc:>9.3f} "
            f"{abstain.abstain_accuracy_unanswerable:>10.3f} "
            f"{abstain.answer_accuracy_answerable:>8.3f}"
        )


def synthetic(chunks: list[Chunk], n: int, rng: random.Random) -> list[Chunk]:
    out = list(chunks[:n])
    while len(out) < n:
        base = rng.choice(chunks)
        sentences = re.split(r"(?<=[.!?])\s+", base.text)
        rng.shuffle(sentences)
        # Four chunks an article, as in the real help centers: ranking is per article.
        doc = f"synthetic{len(out) // 4:06d}"
        out.append(
            replace(
                base,
                id=f"{doc}:{len(out) % 4:04d}",
                doc_id=doc,
                title=f"{base.title} ({doc})",
                source=f"{doc}.md",
                text=" ".join(sentences),
            )
        )
    return out


def speed(index_dir: Path, questions: list[str], embedder: MiniLMEmbedder, root: Path) -> None:
    real = VectorIndex.load(index_dir)
    rng, np_rng = random.Random(0), np.random.default_rng(0)
    print(
        f"\n## speed: {len(questions)} queries each, embedding included (torch threads: "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')})"
    )
    print(
        f"{'chunks':>7} {'load+BM25 s':>11} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'embed p50':>9} {'embed p95':>9}"
    )
    for n in (1_000, 10_000, 100_000):
        chunks = synthetic(real.chunks, n, rng)
        vectors = np.vstack(
            [
                real.embeddings[: min(n, len(real))],
                np_rng.standard_normal((max(0, n - len(real)), real.manifest.dim)),
            ]
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        VectorIndex.write(root / f"speed-{n}", chunks, vectors, embedder.name)
        retriever = HybridRetriever(root / f"speed-{n}", embedder)
        began = time.perf_counter()
        retriever.warm_up()
        loaded = time.perf_counter() - began
        latencies = asyncio.run(_timed(retriever, questions))
        embedding = _embed_times(embedder, questions)
        print(
            f"{n:>7} {loaded:>11.1f} {pct(latencies, 0.5):>7.1f} {pct(latencies, 0.95):>7.1f} "
            f"{pct(embedding, 0.5):>9.1f} {pct(embedding, 0.95):>9.1f}"
        )


def _embed_times(embedder: MiniLMEmbedder, questions: list[str]) -> list[float]:
    """The query embedding alone (cut as searches cut it), to show how much is the model."""
    times = []
    for question in questions:
        began = time.perf_counter()
        embedder.embed([query_text(embedder, question)])
        times.append((time.perf_counter() - began) * 1000)
    return times


async def _timed(retriever: HybridRetriever, questions: list[str]) -> list[float]:
    await retriever.search_with_confidence(questions[0], 5)  # warm the kernels
    latencies = []
    for question in questions:
        began = time.perf_counter()
        await retriever.search_with_confidence(question, 5)
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, default=TECHQA / "kb")
    parser.add_argument("--questions", type=Path, default=TECHQA / "questions.jsonl")
    parser.add_argument("--queries", type=int, default=100, help="queries per speed run")
    args = parser.parse_args()
    embedder = MiniLMEmbedder()
    embedder.warm_up()
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        root = Path(tmp)
        report = ingest(args.kb, root / "index", embedder, progress=False)
        print(
            f"## ingest: {report.documents} documents, {report.chunks} chunks in "
            f"{report.seconds:.1f}s = {report.chunks / report.seconds:.0f} chunks/s "
            f"(MiniLM on {'GPU' if _cuda() else 'CPU'}, load + chunk + embed + write)"
        )
        quality(root / "index", args.questions, CachedEmbedder(embedder))
        questions = [q.text for q in load_questions(args.questions)][: args.queries]
        speed(root / "index", questions, embedder, root)


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    main()
