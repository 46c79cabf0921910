"""Serving a LoRA adapter made by `switchboard finetune` (`SWITCHBOARD_LLM__ADAPTER=DIR`).

The adapter is folded into the base model's weights once at start (peft's
`merge_and_unload`), so serving it costs nothing per token and the engine's batching,
dtype and int8 choices apply to the merged model exactly as to any other.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

log = logging.getLogger(__name__)

ADAPTER_META = "switchboard-adapter.json"


def check_adapter(path: Path, base: str) -> None:
    """Refuse a folder that is not a LoRA adapter; warn when it was made for another base."""
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(
            f"SWITCHBOARD_LLM__ADAPTER={path} is not a LoRA adapter folder (no "
            "adapter_config.json); point it at the --out folder of `switchboard finetune`"
        )
    meta = path / ADAPTER_META
    if meta.is_file():
        made_for = json.loads(meta.read_text()).get("base")
        if made_for and made_for != base:
            log.warning(
                "adapter %s was trained on %r but the model is %r; its answers may be poor",
                path,
                made_for,
                base,
            )


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft calls a transformers method that warns of its own deprecation: not actionable."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        yield


def apply_adapter(model: Any, path: Path, base: str) -> Any:
    """`model` with the adapter at `path` merged into its weights."""
    from peft import PeftModel

    check_adapter(path, base)
    try:
        with quiet_peft():
            merged = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"cannot load the adapter {path} on {base}: {exc}") from exc
    log.info("LoRA adapter %s merged into %s", path, base)
    return merged
