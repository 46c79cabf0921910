"""`CpuEngine`: the default engine on CPU — a GGUF model's own integer weights, computed in fp32.

It is `TransformersEngine` (the same scheduler, continuous batching, cancellation, deadlines
and `Busy`) with another model underneath: every matrix is a `QLinear` whose weights stay
the GGUF's integer codes with their group scales (0.56 GB for the default model instead of
2.0 GB of fp32), multiplied by C kernels built for this CPU (`kernels.py`). Activations
stay fp32, so the products are those of the de-quantized model the transformers engine
runs, up to the order of additions: greedy answers agree with it (tested), which int8
activation quantization (llama.cpp's, CTranslate2's, torch's) does not promise. Decoding
reads a third of the bytes per token (decoding on a CPU is bound by memory bandwidth);
each stream's row is computed the same way whatever else is in the batch, so batched
answers equal unbatched ones.

A LoRA adapter from `switchboard finetune` is applied at run time beside the codes
(y = Wx + s·B(Ax)), which keeps the base weights exact.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.llm.transformers_engine import TransformersEngine
from bot.settings import DEFAULT_MODEL, LARGER_MODEL, LLMSettings

log = logging.getLogger(__name__)


def ensure_cpu_model(settings: LLMSettings, cache_dir: Path) -> Path:
    """The converted folder of the settings' model (made once, with a progress bar)."""
    from bot.llm.cpu.model import convert, ensure_converted, is_converted
    from bot.llm.weights import DEFAULT, LARGER, build_once, join_and_verify, part_paths

    if settings.model.endswith(".gguf"):
        gguf = Path(settings.model)
        if not gguf.is_file():
            raise ConfigError(f"the model file {gguf} does not exist")
        return ensure_converted(gguf, cache_dir)
    if settings.model not in (DEFAULT_MODEL, LARGER_MODEL):
        from bot.llm.cpu.model import ensure_converted_transformers

        return ensure_converted_transformers(settings.model, cache_dir)
    packaged = DEFAULT if settings.model == DEFAULT_MODEL else LARGER
    final = cache_dir / f"{packaged.name}-cpu"
    if is_converted(final, sha256=packaged.sha256):
        return final
    log.info("preparing the built-in model %s once for the cpu engine", packaged.name)

    def make(out: Path) -> None:
        gguf = out.with_name(packaged.gguf_name)
        join_and_verify(part_paths(packaged), gguf, packaged)
        convert(gguf, out, sha256=packaged.sha256)

    return build_once(final, make)


class CpuEngine(TransformersEngine):
    """A GGUF model on the CPU, its weights kept as integer codes (see the module)."""

    def _load(self) -> tuple[Any, Any, str]:
        from transformers import AutoTokenizer

        from bot.llm.cpu.decoder import lean
        from bot.llm.cpu.kernels import instruction_set, load
        from bot.llm.cpu.model import build

        if self._settings.device == "cuda":
            raise ConfigError("the cpu engine runs on the CPU; for CUDA use engine transformers")
        if self._settings.quantization != "none" or self._settings.dtype not in (
            "auto",
            "float32",
        ):
            raise ConfigError(
                "the cpu engine computes in float32 on the model's own integer weights; "
                "SWITCHBOARD_LLM__DTYPE and __QUANTIZATION apply to engine transformers"
            )
        try:
            lib = load(self._cache_dir)
        except ConfigError as exc:
            if self._settings.engine != "auto":
                raise
            log.warning("%s; using the transformers engine instead", exc)
            return super()._load()
        folder = ensure_cpu_model(self._settings, self._cache_dir)
        model = build(folder, lib)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if self._settings.adapter is not None:
            attach_adapter(model, self._settings.adapter, self._settings.model)
        model = lean(model) or model
        self._device = "cpu"
        return model, tokenizer, f"cpu engine, GGUF codes, fp32 math, {instruction_set()}"


def attach_adapter(model: Any, path: Path, base: str) -> None:
    """Apply a PEFT LoRA adapter at run time: each target `QLinear` gets its (A, B, scale)."""
    from safetensors.torch import load_file

    from bot.llm.cpu.kernels import FusedPart, QLinear
    from bot.llm.finetune.adapter import check_adapter

    check_adapter(path, base)
    config = json.loads((path / "adapter_config.json").read_text())
    unsupported = [
        key
        for key in ("rank_pattern", "alpha_pattern", "modules_to_save", "use_dora")
        if config.get(key)
    ]
    if config.get("peft_type", "LORA") != "LORA" or unsupported:
        raise ConfigError(
            f"the cpu engine applies plain LoRA adapters; {path} uses "
            f"{', '.join(unsupported) or config.get('peft_type')}: serve it with "
            "SWITCHBOARD_LLM__ENGINE=transformers"
        )
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
    tensors = load_file(str(path / "adapter_model.safetensors"))
    attached = 0
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise ConfigError(f"the adapter {path} targets {name}, not in {base}") from exc
        if not isinstance(module, QLinear | FusedPart):
            raise ConfigError(f"the adapter {path} targets {name}, which is not a matrix")
        module.lora.append((a.float().contiguous(), b.float().contiguous(), scale))
        attached += 1
    if not attached:
        raise ConfigError(f"the adapter {path} holds no LoRA weights")
    log.info("LoRA adapter %s applied at run time to %d matrices of %s", path, attached, base)
