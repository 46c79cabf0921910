"""HybridRetriever with real MiniLM on the demo help center: fusion, abstention, adapters.

Each fusion case names a query that one ranking alone gets wrong and the hybrid gets right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge.embeddings import MiniLMEmbedder
from knowledge.hybrid import HybridRetriever, Mode
from knowledge.langchain_retriever import LangChainRetriever

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    model = MiniLMEmbedder()
    model.warm_up()
    return model


def _retriever(index: Path, embedder: MiniLMEmbedder, mode: Mode = "hybrid") -> HybridRetriever:
    retriever = HybridRetriever(index, embedder, mode=mode)
    retriever.warm_up()
    return retriever


async def _first_source(retriever: HybridRetriever, query: str) -> str:
    passages, _ = await retriever.search_with_confidence(query, 4)
    return passages[0].citation.source


@pytest.mark.parametrize(
    ("query", "source", "weak_alone"),
    [
        # A term only the returns article uses: the embedding of one rare word is vague.
        ("clearance", "returns-policy.md", "dense"),
        # A paraphrase whose words the article does not use: BM25 matches the wrong one.
        (
            "I can't get into my profile anymore",
            "creating-an-account-and-password-reset.md",
            "bm25",
        ),
    ],
)
async def test_hybrid_ranks_the_article_first_when_one_ranking_alone_misses_it(
    demo_index: Path, embedder: MiniLMEmbedder, query: str, source: str, weak_alone: Mode
) -> None:
    assert await _first_source(_retriever(demo_index, embedder), query) == source
    assert await _first_source(_retriever(demo_index, embedder, weak_alone), query) != source


@pytest.mark.parametrize(
    ("query", "answers"),
    [
        ("How long do I have to return an item?", True),
        ("Which payment methods do you accept?", True),
        ("How do I reset my password?", True),
        ("What is the capital of France?", False),
        ("Who won the world cup in 2018?", False),
        ("How do I configure Kubernetes ingress?", False),
    ],
)
async def test_confidence_is_below_the_threshold_when_the_help_center_has_no_answer(
    demo_index: Path, embedder: MiniLMEmbedder, query: str, answers: bool
) -> None:
    retriever = HybridRetriever(demo_index, embedder, abstain=True)
    retriever.warm_up()
    passages, confidence = await retriever.search_with_confidence(query, 4)
    assert passages
    assert retriever.threshold is not None
    assert (confidence >= retriever.threshold) is answers
    assert bool(await retriever.search(query, 4)) is answers


async def test_documents_carry_citation_metadata_when_used_through_langchain(
    demo_index: Path, embedder: MiniLMEmbedder
) -> None:
    adapter = LangChainRetriever(retriever=_retriever(demo_index, embedder), k=3)
    documents = await adapter.ainvoke("How long does a refund take?")
    assert len(documents) == 3
    top = documents[0]
    assert top.metadata["source"] == "refunds.md"
    assert top.metadata["title"]
    assert top.metadata["score"] > 0
    assert top.metadata["chunk_id"]
    assert top.page_content.startswith(top.metadata["title"])


def test_sync_invoke_works_outside_an_event_loop_when_used_through_langchain(
    demo_index: Path, embedder: MiniLMEmbedder
) -> None:
    adapter = LangChainRetriever(retriever=_retriever(demo_index, embedder), k=2)
    documents = adapter.invoke("track my parcel")
    assert documents[0].metadata["source"] == "tracking-an-order.md"


def _switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env={**os.environ, "SWITCHBOARD_REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_kb_search_prints_results_and_confidence_when_asked_for_json(demo_index: Path) -> None:
    result = _switchboard(
        "kb", "search", "how do I reset my password", "--json", "-k", "2",
        "--index-dir", str(demo_index),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0.0 <= report["confidence"] <= 1.0
    assert len(report["results"]) == 2
    top = report["results"][0]
    assert top["source"] == "creating-an-account-and-password-reset.md"
    assert {"rank", "score", "title", "chunk_id", "heading", "text"} <= top.keys()


def test_kb_eval_reports_every_figure_when_run_on_a_tiny_question_file(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"question": "How long do I have to return an item?", "gold_doc_ids": ["returns-policy"]},
        {"question": "Can I pay with PayPal?", "gold_doc_ids": ["payment-methods"]},
        {"question": "Where is my parcel?", "gold_doc_ids": ["tracking-an-order"]},
        {"question": "What is the capital of France?", "gold_doc_ids": []},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = _switchboard(
        "kb", "eval", "--kb", "demo/kb", "--questions", str(questions), "--json", "-k", "5"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["questions"], report["answerable"], report["k"]) == (4, 3, 5)
    assert report["hit_at_k"] == 1.0
    assert report["mrr_at_10"] > 0.6
    assert 0.0 <= report["auroc"] <= 1.0
    assert report["abstain_accuracy_unanswerable"] == 1.0
    text = _switchboard("kb", "eval", "--kb", "demo/kb", "--questions", str(questions))
    assert text.returncode == 0, text.stderr
    assert "MRR@10" in text.stdout and "abstention AUROC" in text.stdout
