"""`build_language_model` picks the engine the settings name, loading nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.llm.cpu.engine import CpuEngine
from bot.llm.factory import build_language_model
from bot.llm.openai_engine import OpenAIEngine
from bot.llm.transformers_engine import TransformersEngine
from bot.settings import LLMSettings, Settings


def test_cpu_engine_by_default_on_a_cpu(tmp_path: Path) -> None:
    engine = build_language_model(Settings(data_dir=tmp_path, llm=LLMSettings(device="cpu")))
    assert isinstance(engine, CpuEngine)
    assert not engine.ready()


@pytest.mark.parametrize(
    "llm",
    [
        LLMSettings(engine="transformers"),
        LLMSettings(engine="local"),  # the old name
        LLMSettings(device="cpu", dtype="bfloat16"),
        LLMSettings(device="cpu", quantization="int8"),
        LLMSettings(device="cpu", model="Qwen/Qwen2.5-0.5B-Instruct"),  # not a GGUF
        LLMSettings(device="cuda"),
    ],
)
def test_transformers_engine_when_asked_or_when_auto_cannot_use_cpu(
    tmp_path: Path, llm: LLMSettings
) -> None:
    engine = build_language_model(Settings(data_dir=tmp_path, llm=llm))
    assert type(engine) is TransformersEngine
    assert not engine.ready()


def test_cpu_engine_when_named_for_any_model(tmp_path: Path) -> None:
    llm = LLMSettings(engine="cpu", model="Qwen/Qwen2.5-0.5B-Instruct")
    assert isinstance(build_language_model(Settings(data_dir=tmp_path, llm=llm)), CpuEngine)


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
