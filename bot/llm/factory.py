"""Choosing the `LanguageModel` engine from settings; engines are imported only when chosen."""

from __future__ import annotations

from bot.llm.base import LanguageModel
from bot.settings import DEFAULT_MODEL, LARGER_MODEL, LLMSettings, Settings


def build_language_model(settings: Settings) -> LanguageModel:
    """The engine `settings.llm.engine` names; nothing heavy is loaded until `warm_up()`."""
    if settings.llm.engine == "openai":
        from bot.llm.openai_engine import OpenAIEngine

        return OpenAIEngine(settings.llm)
    if pick_engine(settings.llm) == "cpu":
        from bot.llm.cpu.engine import CpuEngine

        return CpuEngine(settings.llm, settings.model_cache_dir)
    from bot.llm.transformers_engine import TransformersEngine

    return TransformersEngine(settings.llm, settings.model_cache_dir)


def pick_engine(llm: LLMSettings) -> str:
    """The in-process engine for the settings: `auto` picks cpu for a GGUF model (the
    built-in ones are) on a CPU with float32 math, transformers otherwise (CUDA, bf16/int8
    asked for, a transformers model)."""
    if llm.engine in ("cpu", "transformers"):
        return llm.engine
    if llm.engine == "local":
        return "transformers"
    on_cpu = llm.device == "cpu" or (llm.device == "auto" and not _cuda())
    plain = llm.dtype in ("auto", "float32") and llm.quantization == "none"
    gguf = llm.model in (DEFAULT_MODEL, LARGER_MODEL) or llm.model.endswith(".gguf")
    return "cpu" if on_cpu and plain and gguf else "transformers"


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
