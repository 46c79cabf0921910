"""`build_language_model` picks the engine the settings name, loading nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.llm.factory import build_language_model
from bot.llm.openai_engine import OpenAIEngine
from bot.llm.transformers_engine import TransformersEngine
from bot.settings import LLMSettings, Settings


def test_local_engine_when_engine_is_local(tmp_path: Path) -> None:
    engine = build_language_model(Settings(data_dir=tmp_path))
    assert isinstance(engine, TransformersEngine)
    assert not engine.ready()


def test_remote_engine_when_engine_is_openai(tmp_path: Path) -> None:
    llm = LLMSettings(engine="openai", base_url="http://vllm:8000/v1", model="served-name")
    engine = build_language_model(Settings(data_dir=tmp_path, llm=llm))
    assert isinstance(engine, OpenAIEngine)
    assert engine.name == "served-name"
    assert not engine.ready()


def test_readme_remote_example_builds_the_remote_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Remote model servers", 1)[1]
    example = section.split("```bash", 1)[1].split("```", 1)[0]
    env = dict(re.findall(r"^(SWITCHBOARD_\w+)=(\S+)", example, flags=re.MULTILINE))
    assert env["SWITCHBOARD_LLM__ENGINE"] == "openai"
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    engine = build_language_model(Settings())
    assert isinstance(engine, OpenAIEngine)
    assert (engine.name, engine._base_url) == ("Qwen/Qwen2.5-0.5B-Instruct", "http://vllm:8000/v1")
