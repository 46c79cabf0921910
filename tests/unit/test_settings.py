"""Settings validation of the remote-engine fields, through the environment as users set them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import LLMSettings, Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A developer's .env or exported settings must not leak into these tests.
    monkeypatch.chdir(tmp_path)
    for name in os.environ:
        if name.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)


def test_refused_naming_base_url_when_openai_engine_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_LLM__ENGINE", "openai")
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert error["loc"] == ("llm", "base_url")  # the CLI prints SWITCHBOARD_LLM__BASE_URL
    assert "required when the engine is 'openai'" in error["msg"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("auto", None)),
        ({"SWITCHBOARD_LLM__BASE_URL": "http://vllm:8000/v1"}, ("auto", "http://vllm:8000/v1")),
        (
            {"SWITCHBOARD_LLM__ENGINE": "openai", "SWITCHBOARD_LLM__BASE_URL": "http://h:1/v1/"},
            ("openai", "http://h:1/v1"),
        ),
        ({"SWITCHBOARD_LLM__BASE_URL": ""}, ("auto", None)),
    ],
)
def test_engine_and_base_url_accepted_when_consistent(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: tuple[str, str | None]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.llm.engine, settings.llm.base_url) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SWITCHBOARD_LLM__BASE_URL", "vllm:8000/v1"),
        ("SWITCHBOARD_LLM__ENGINE", "vllm"),
        ("SWITCHBOARD_LLM__RETRIES", "-1"),
        ("SWITCHBOARD_LLM__READ_TIMEOUT_S", "0"),
    ],
)
def test_refused_when_remote_setting_is_invalid(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    locs = ["SWITCHBOARD_" + "__".join(map(str, e["loc"])).upper() for e in caught.value.errors()]
    assert locs == [name]


def test_api_key_is_secret_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_LLM__API_KEY", "sk-very-secret")
    settings = Settings()
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    monkeypatch.setenv("SWITCHBOARD_LLM__API_KEY", "")
    assert Settings().llm.api_key is None


@pytest.mark.parametrize(
    ("llm", "expected"),
    [
        ({"device": "cpu", "dtype": "float32"}, ("cpu", "float32", False)),
        ({"device": "cpu", "quantization": "int8"}, ("cpu", "float32", True)),
        ({"device": "cpu", "dtype": "bfloat16"}, ("cpu", "bfloat16", False)),
    ],
)
def test_device_dtype_and_quantization_when_chosen(
    llm: dict[str, str], expected: tuple[str, str, bool]
) -> None:
    from bot.llm.transformers_engine import pick_device_and_dtype

    device, dtype, quantize = pick_device_and_dtype(LLMSettings(**llm))  # type: ignore[arg-type]
    assert (device, str(dtype).removeprefix("torch."), quantize) == expected


@pytest.mark.parametrize(
    "llm",
    [
        {"device": "cuda", "quantization": "int8"},
        {"device": "cpu", "dtype": "bfloat16", "quantization": "int8"},
    ],
)
def test_int8_refused_with_the_setting_named_when_not_cpu_fp32(llm: dict[str, str]) -> None:
    from bot.errors import ConfigError
    from bot.llm.transformers_engine import pick_device_and_dtype

    with pytest.raises(ConfigError, match="SWITCHBOARD_LLM__QUANTIZATION"):
        pick_device_and_dtype(LLMSettings(**llm))  # type: ignore[arg-type]


def test_chunk_sizes_read_from_env_and_overlap_must_stay_below_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_KNOWLEDGE__CHUNK_TOKENS", "128")
    monkeypatch.setenv("SWITCHBOARD_KNOWLEDGE__CHUNK_OVERLAP", "16")
    knowledge = Settings(_env_file=None).knowledge  # type: ignore[call-arg]
    assert (knowledge.chunk_tokens, knowledge.chunk_overlap) == (128, 16)
    monkeypatch.setenv("SWITCHBOARD_KNOWLEDGE__CHUNK_OVERLAP", "128")
    with pytest.raises(ValidationError, match=r"chunk_overlap \(128\) must be below chunk_tokens"):
        Settings(_env_file=None)  # type: ignore[call-arg]
