"""`switchboard prompt check|render` as a user runs them: real presidio, MiniLM, the index."""

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


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "prompt", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_render_shows_the_exact_prompt_and_check_names_the_line(
    tmp_path: Path, demo_index: Path, tiny_model_dir: Path
) -> None:
    env = {
        "SWITCHBOARD_KNOWLEDGE__INDEX_DIR": str(demo_index),
        "SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL": str(DEMO_ABSTENTION),
        "SWITCHBOARD_LLM__MODEL": str(tiny_model_dir),
        "SWITCHBOARD_POLICY_FILE": "",
        "SWITCHBOARD_PROMPT_FILE": "",
    }
    shown = run(
        "render", "--question", "How much is express shipping? I am jo@example.org",
        "--channel", "slack", "--json", env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    system, user = result["messages"][0]["content"], result["messages"][-1]["content"]
    assert "Format the answer for Slack" in system and "$14.95" in system
    assert result["passages"][0] == "shipping-options-and-times.md"
    assert user == "How much is express shipping? I am <EMAIL_ADDRESS>"
    assert result["counted"] == "model tokenizer" and result["tokens"] > 100

    bad = tmp_path / "prompt.yaml"
    bad.write_text("version: 1\nrules:\n  max_sentences: -1\nsystem: 'Hi {{ nobody }}'\n")
    checked = run("check", str(bad), env=env)
    assert checked.returncode == 2
    assert f"{bad}:3: rules.max_sentences: Input should be greater than or equal to 1" in (
        checked.stderr
    )
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nsystem: 'You help {{ company }} customers.'\n")
    assert run("check", str(good), env=env).stdout.strip() == f"{good}: ok"
    rendered = run("render", "--question", "hi", "--file", str(good), env=env)
    assert "You help Northwind Outfitters customers." in rendered.stdout
