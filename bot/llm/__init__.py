"""Language models: the `LanguageModel` protocol and its engines."""

from bot.llm.base import ChatMessage, GenerationParams, LanguageModel, ScriptedModel

__all__ = ["ChatMessage", "GenerationParams", "LanguageModel", "ScriptedModel"]
