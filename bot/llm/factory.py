"""Choosing the `LanguageModel` engine from settings; engines are imported only when chosen."""

from __future__ import annotations

from bot.llm.base import LanguageModel
from bot.settings import Settings


def build_language_model(settings: Settings) -> LanguageModel:
    """The engine `settings.llm.engine` names; nothing heavy is loaded until `warm_up()`."""
    if settings.llm.engine == "openai":
        from bot.llm.openai_engine import OpenAIEngine

        return OpenAIEngine(settings.llm)
    from bot.llm.transformers_engine import TransformersEngine

    return TransformersEngine(settings.llm, settings.model_cache_dir)
