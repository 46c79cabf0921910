"""Incremental re-ingest with the real MiniLM model, and `switchboard kb ingest --rebuild`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge.embeddings import MiniLMEmbedder
from knowledge.index import VectorIndex, current_version
from knowledge.ingest import ingest
from knowledge.retriever import DenseRetriever
from tests.support import CountingEmbedder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HELP_CENTER = {
    "returns.md": (
        "# Returns policy\n\nYou can return any item within 30 days of delivery for a full "
        "refund.\n"
    ),
    "shipping.md": "# Shipping\n\nStandard shipping takes 3-5 business days.\n",
    "account/password-reset.md": (
        "# Resetting your password\n\nClick 'Forgot password' on the sign-in page and we will "
        "email you a reset link.\n"
    ),
}


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    model = MiniLMEmbedder()
    model.warm_up()
    return model


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name, text in HELP_CENTER.items():
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / name).write_text(text, encoding="utf-8")
    return tmp_path / "docs"


async def test_only_the_changed_article_is_embedded_when_reingested_with_minilm(
    minilm: MiniLMEmbedder, docs: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    ingest(docs, index_dir, minilm, progress=False)
    retriever = DenseRetriever(index_dir, minilm, reload_interval=0)
    retriever.warm_up()
    (docs / "shipping.md").write_text(
        "# Shipping\n\nStandard shipping takes 3-5 business days. We now deliver to Canada "
        "and Mexico too.\n"
    )

    counting = CountingEmbedder(minilm)
    report = ingest(docs, index_dir, counting, progress=False)

    assert (report.changed, report.unchanged, report.embedded) == (1, 2, 1)
    assert counting.texts[0].startswith("Shipping\n\n")
    passages = await retriever.search("Do you ship to Canada?", k=1)
    assert passages[0].citation.source == "shipping.md"
    assert "Canada" in passages[0].text
    assert retriever.version == report.version == current_version(index_dir)


def _kb_ingest(docs: Path, index_dir: Path, *flags: str) -> str:
    command = ["kb", "ingest", str(docs), "--index-dir", str(index_dir), *flags]
    result = subprocess.run(
        [sys.executable, "-m", "bot", *command],
        cwd=ROOT,
        env={**os.environ, "SWITCHBOARD_REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_chunk_is_embedded_again_when_cli_is_given_rebuild(
    docs: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    _kb_ingest(docs, index_dir)
    first = current_version(index_dir)

    again = _kb_ingest(docs, index_dir)
    assert "3 unchanged, 0 removed; 0 chunks embedded" in again
    assert current_version(index_dir) == first

    rebuilt = _kb_ingest(docs, index_dir, "--rebuild")
    assert "3 chunks embedded (full rebuild)" in rebuilt
    assert current_version(index_dir) != first
    assert len(VectorIndex.load(index_dir, embedder_name=MiniLMEmbedder().name)) == 3
