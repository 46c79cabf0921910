"""`OpenAIEngine` without a server: construction, readiness, the token estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.llm.base import ChatMessage
from bot.llm.openai_engine import OpenAIEngine
from bot.settings import LLMSettings


def _engine() -> OpenAIEngine:
    return OpenAIEngine(LLMSettings(engine="openai", base_url="http://127.0.0.1:9/v1"))


def test_not_ready_when_not_warmed_up() -> None:
    engine = _engine()
    assert not engine.ready()
    assert engine.name == LLMSettings().model


def test_config_error_when_base_url_is_missing() -> None:
    with pytest.raises(ConfigError, match="BASE_URL"):
        OpenAIEngine(LLMSettings())


def test_token_estimate_grows_with_text_when_no_tokenizer_is_set() -> None:
    engine = _engine()
    empty = engine.count_tokens([ChatMessage("user", "")])
    short = engine.count_tokens([ChatMessage("user", "where is my order")])
    longer = engine.count_tokens([ChatMessage("user", "where is my order " * 10)])
    assert 0 < empty < short < longer
    assert longer == pytest.approx(len("where is my order " * 10) / 4 + 7, abs=1)


def test_config_error_naming_the_setting_when_tokenizer_cannot_load(tmp_path: Path) -> None:
    settings = LLMSettings(
        engine="openai", base_url="http://127.0.0.1:9/v1", tokenizer=str(tmp_path / "missing")
    )
    with pytest.raises(ConfigError, match="SWITCHBOARD_LLM__TOKENIZER"):
        OpenAIEngine(settings).warm_up()
