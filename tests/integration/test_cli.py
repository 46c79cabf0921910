"""The `switchboard` command as a user runs it: a real subprocess, real files, real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import DEMO_ABSTENTION

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env={**os.environ, "SWITCHBOARD_REDIS_URL": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_every_command_when_asked() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "chat", "kb", "policy"):
        assert command in result.stdout
    kb = _run("kb", "--help")
    assert "ingest" in kb.stdout and "search" in kb.stdout


def test_policy_check_accepts_the_default_policy_when_checked() -> None:
    result = _run("policy", "check", "policies/default.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_policy_check_names_the_line_when_the_file_is_bad(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    good = (ROOT / "policies" / "default.yaml").read_text()
    bad.write_text(good.replace("version: 1", "version: 1\nsurprise_key: true", 1))
    assert "surprise_key" in bad.read_text()
    line = bad.read_text().splitlines().index("surprise_key: true") + 1
    result = _run("policy", "check", str(bad))
    assert result.returncode == 1
    assert f"bad.yaml:{line}:" in result.stderr
    assert "surprise_key" in result.stderr


def test_kb_ingest_then_search_finds_the_article_when_run_in_order(tmp_path: Path) -> None:
    index = tmp_path / "index"
    ingest = _run("kb", "ingest", "demo/kb", "--index-dir", str(index))
    assert ingest.returncode == 0, ingest.stderr
    assert "indexed 12 documents" in ingest.stdout
    search = _run(
        "kb", "search", "how many days do I have to return an item", "--index-dir", str(index)
    )
    assert search.returncode == 0, search.stderr
    assert search.stdout.splitlines()[0].endswith("(returns-policy.md)")


def test_kb_ingest_indexes_listed_pages_and_names_skipped_ones_when_given_urls(
    tmp_path: Path,
) -> None:
    site = ROOT / "tests" / "fixtures" / "kb" / "site"
    index = tmp_path / "index"
    result = _run(
        "kb", "ingest", str(site / "pages"), "--urls", str(site / "sitemap.xml"),
        "--index-dir", str(index),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "indexed 2 documents" in result.stdout
    assert "1 skipped:" in result.stderr
    assert "https://help.example.com/not-mirrored: no copy in the mirror" in result.stderr
    search = _run("kb", "search", "refund", "--json", "--index-dir", str(index))
    sources = {r["source"] for r in json.loads(search.stdout)["results"]}
    assert "https://help.example.com/returns/policy" in sources


def test_kb_ingest_fails_clearly_when_the_folder_is_missing(tmp_path: Path) -> None:
    result = _run("kb", "ingest", str(tmp_path / "nope"), "--index-dir", str(tmp_path / "i"))
    assert result.returncode == 1
    assert "nope" in result.stderr


def test_chat_once_prints_the_final_message_as_json_when_asked(
    tiny_model_dir: Path, demo_index: Path, tmp_path: Path
) -> None:
    env = {
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_LLM__MODEL": str(tiny_model_dir),
        "SWITCHBOARD_LLM__MAX_NEW_TOKENS": "8",
        "SWITCHBOARD_KNOWLEDGE__INDEX_DIR": str(demo_index),
        "SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL": str(DEMO_ABSTENTION),
    }
    result = _run("chat", "--once", "How do I reset my password?", "--json", env=env)
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert final["type"] == "message"
    assert final["conversation_id"]
    sources = [c["source"] for c in final["citations"]]
    assert "creating-an-account-and-password-reset.md" in sources, final


def test_bad_setting_is_named_without_its_value_when_serve_starts() -> None:
    result = _run("serve", env={"SWITCHBOARD_REDIS_URL": "http://user:s3cret@localhost"})
    assert result.returncode == 2
    assert "SWITCHBOARD_REDIS_URL" in result.stderr and "redis://" in result.stderr
    assert "s3cret" not in result.stderr


def test_serve_refuses_a_bad_actions_file_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "actions.yaml"
    bad.write_text("version: 1\nserver:\n  url: http://127.0.0.1:5055\nintents:\n  - name: x\n")
    result = _run("serve", "--port", "0", env={"SWITCHBOARD_ACTIONS_FILE": str(bad)}, timeout=60)
    assert result.returncode == 2
    assert f"{bad}:5: intents[0].examples: missing required key" in result.stderr
