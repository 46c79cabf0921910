"""A GGUF model for the cpu engine: converted once into the cache, built from codes at start.

`convert()` reads the GGUF once (config, tokenizer, every tensor's codes) and writes a
folder: `config.json`, the tokenizer, and `codes.safetensors` with, per matrix, its int8
codes, group scales and offsets. `build()` makes the transformers model on the meta device
and puts `QLinear` / `QEmbedding` modules and the float tensors in place, so the process
never holds the fp32 weights (2.0 GB for the default model; the codes are 0.56 GB).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bot.errors import ConfigError
from bot.llm.cpu.codes import Codes, decode, quantize_q8
from bot.llm.cpu.kernels import FusedInput, QEmbedding, QLinear
from bot.llm.weights import build_once

log = logging.getLogger(__name__)

FORMAT = 1
_MARKER = "switchboard-cpu.json"
_WEIGHTS = "codes.safetensors"


def is_converted(folder: Path, **expected: str) -> bool:
    """Whether `folder` holds a finished conversion of this format (and `expected` facts)."""
    marker = folder / _MARKER
    if not marker.is_file():
        return False
    meta = json.loads(marker.read_text())
    return meta.get("format") == FORMAT and all(meta.get(k) == v for k, v in expected.items())


def ensure_converted(gguf: Path, cache_dir: Path) -> Path:
    """The converted folder for `gguf`, made once (atomically: renamed into place)."""
    stat = gguf.stat()
    final = cache_dir / f"cpu-{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if is_converted(final):
        return final
    log.info("converting %s once for the cpu engine", gguf.name)

    def make(out: Path) -> None:
        try:
            convert(gguf, out)
        except (ValueError, KeyError, NotImplementedError) as exc:
            raise ConfigError(f"cannot convert {gguf} for the cpu engine: {exc}") from exc

    return build_once(final, make)


def _processor(config: Any) -> Any:
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    cls: Any = TENSOR_PROCESSORS.get(config.model_type, TensorProcessor)
    if cls.__name__ not in ("TensorProcessor", "LlamaTensorProcessor"):
        raise NotImplementedError(f"the {config.model_type} architecture is not supported")
    return cls(config=config.to_dict())


def _permuted_rows(processor: Any, name: str, rows: int) -> np.ndarray | None:
    """The row order transformers gives a tensor (llama's q/k are permuted in GGUF)."""
    index = np.arange(rows)
    moved = processor.process(index, name).weights
    return None if np.array_equal(moved, index) else np.asarray(moved)


def _meta_model(config: Any) -> Any:
    from transformers import AutoModelForCausalLM

    auto: Any = AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


def convert(gguf: Path, out: Path, **meta: str) -> None:
    """Write the converted folder for `gguf` into `out` (see the module's docstring)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.numpy import save_file
    from tqdm import tqdm  # type: ignore[import-untyped]
    from transformers import AutoConfig, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map

    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    processor = _processor(config)
    model = _meta_model(config)
    names = get_gguf_hf_weights_map(model, processor)
    matrices = {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear | torch.nn.Embedding)
    }
    reader = GGUFReader(gguf)
    tensors: dict[str, np.ndarray] = {}
    inexact: list[str] = []
    for tensor in tqdm(reader.tensors, desc="converting for the cpu engine", unit="tensor"):
        hf = names.get(tensor.name)
        if hf is None:
            continue
        kind = tensor.tensor_type.name

        def floats(tensor: Any = tensor) -> np.ndarray:
            return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)

        if hf not in matrices:
            vector = processor.process(floats(), tensor.name).weights
            tensors[hf] = np.ascontiguousarray(vector, dtype=np.float32)
            continue
        k, n = (int(size) for size in tensor.shape)  # GGUF lists the fastest axis first
        codes = decode(kind, tensor.data, n, k, floats)
        rows = _permuted_rows(processor, tensor.name, n)
        if rows is not None:
            codes = codes.take_rows(rows)
        if not codes.exact:
            inexact.append(f"{tensor.name} ({kind})")
        _put_codes(tensors, hf.removesuffix(".weight"), codes)
    out.mkdir(parents=True)
    save_file(tensors, str(out / _WEIGHTS))
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _MARKER).write_text(
        json.dumps({"format": FORMAT, "source": gguf.name, "requantized": inexact, **meta})
    )
    if inexact:
        log.warning("re-quantized (not exact) for the cpu engine: %s", ", ".join(inexact))


def ensure_converted_transformers(source: str, cache_dir: Path) -> Path:
    """The converted folder for a transformers model (a folder or hub id), made once.

    Its float matrices are re-quantized to Q8_0's form (int8, a scale per 32 columns):
    close to the original, not exact as a GGUF's codes are.
    """
    import hashlib

    stamp = source
    folder = Path(source)
    if folder.is_dir():
        stamp += "".join(f"{p.name}{p.stat().st_mtime_ns}" for p in sorted(folder.iterdir()))
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    final = cache_dir / f"cpu-{folder.name}-{digest}"
    if is_converted(final):
        return final
    log.info("converting %s once for the cpu engine (re-quantized to int8)", source)
    return build_once(final, lambda out: convert_transformers(source, out))


def convert_transformers(source: str, out: Path) -> None:
    from safetensors.numpy import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tensors: dict[str, np.ndarray] = {}
    matrices = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Embedding):
            codes = quantize_q8(module.weight.detach().numpy())
            _put_codes(tensors, name, codes)
            matrices.add(f"{name}.weight")
    for name, tensor in model.state_dict().items():
        if name not in matrices:
            tensors[name] = np.ascontiguousarray(tensor.detach().float().numpy())
    out.mkdir(parents=True)
    save_file(tensors, str(out / _WEIGHTS))
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _MARKER).write_text(
        json.dumps({"format": FORMAT, "source": source, "requantized": ["all"]})
    )


def _put_codes(tensors: dict[str, np.ndarray], prefix: str, codes: Codes) -> None:
    tensors[f"{prefix}.codes"] = np.ascontiguousarray(codes.codes)
    tensors[f"{prefix}.scales"] = np.ascontiguousarray(codes.scales)
    if codes.offsets is not None:
        tensors[f"{prefix}.offsets"] = np.ascontiguousarray(codes.offsets)
    tensors[f"{prefix}.group"] = np.array([codes.group], dtype=np.int32)
    tensors[f"{prefix}.exact"] = np.array([int(codes.exact)], dtype=np.int32)


def _codes(tensors: dict[str, torch.Tensor], prefix: str) -> Codes:
    offsets = tensors.get(f"{prefix}.offsets")
    return Codes(
        tensors[f"{prefix}.codes"].numpy(),
        tensors[f"{prefix}.scales"].numpy(),
        None if offsets is None else offsets.numpy(),
        int(tensors[f"{prefix}.group"][0]),
        bool(tensors[f"{prefix}.exact"][0]),
    )


def build(folder: Path, lib: Any) -> Any:
    """The transformers model of a converted folder, its matrices as `QLinear`s."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    model = _meta_model(config)
    tensors = load_file(str(folder / _WEIGHTS))
    tied = "lm_head.codes" not in tensors
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear):
            prefix = "model.embed_tokens" if name == "lm_head" and tied else name
            bias = tensors.get(f"{name}.bias")
            replacement: torch.nn.Module = QLinear(_codes(tensors, prefix), bias, lib)
        elif isinstance(module, torch.nn.Embedding):
            replacement = QEmbedding(_codes(tensors, name))
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
    floats = {k: v for k, v in tensors.items() if k.rpartition(".")[2] not in _CODE_PARTS}
    floats = {k: v for k, v in floats.items() if not _is_bias_of_qlinear(model, k)}
    model.load_state_dict(floats, strict=False, assign=True)
    _materialize_buffers(model, config)
    _fuse(model, lib)
    leftover = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if leftover:
        raise ConfigError(f"the converted model {folder} lacks tensors: {leftover[:5]}")
    return model.eval()


_FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _fuse(model: Any, lib: Any) -> None:
    """Layers that read the same input become one `FusedInput` (see kernels.py)."""
    for _, module in list(model.named_modules()):
        for names in _FUSED:
            found = [getattr(module, name, None) for name in names]
            layers = [layer for layer in found if isinstance(layer, QLinear)]
            if len(layers) != len(names):
                continue
            if len({(layer.group, layer.in_features) for layer in layers}) != 1:
                continue
            fused = FusedInput(layers, lib)
            module.add_module("_fused_" + names[0], fused)
            for name, part in zip(names, fused.parts, strict=True):
                setattr(module, name, part)


_CODE_PARTS = {"codes", "scales", "offsets", "group", "exact"}


def _is_bias_of_qlinear(model: Any, key: str) -> bool:
    owner, _, leaf = key.rpartition(".")
    return leaf == "bias" and isinstance(model.get_submodule(owner), QLinear)


def _materialize_buffers(model: Any, config: Any) -> None:
    """Rotary tables are computed, not stored: make the meta-device ones for real."""
    for name, module in list(model.named_modules()):
        buffers = [b for b in module.buffers(recurse=False) if b is not None and b.is_meta]
        if not buffers:
            continue
        fresh = type(module)(config=config)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, fresh)
