"""The C kernels (qmatmul.c), built once per CPU into the model cache, and the torch modules
that use them: `QLinear` (a Linear layer over integer codes) and `QEmbedding`.

The library is compiled at first use with the machine's C compiler and the instruction set
this CPU has (AVX2+FMA, else portable C), into `cache_dir/kernels/<hash>.so`; the hash
covers the source and the flags, so a changed source or CPU gets its own build. It is
compiled with OpenMP and, loaded after torch, shares torch's OpenMP runtime (one thread
pool, no two pools spinning against each other on a 2-core machine).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import logging
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bot.errors import ConfigError
from bot.llm.cpu.codes import Codes

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("qmatmul.c")
MAX_ROWS = 8
"""Up to this many rows (decoding streams) the integer kernel runs; above it (a prompt's
prefill), the codes are expanded to floats and a BLAS product runs."""

_lock = threading.Lock()
_lib: Any = None


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def compile_flags(flags: set[str] | None = None) -> list[str]:
    """-O3 and OpenMP, plus AVX2/FMA/F16C where this CPU has them."""
    flags = cpu_flags() if flags is None else flags
    out = ["-O3", "-fopenmp", "-shared", "-fPIC", "-fno-math-errno"]
    if {"avx2", "fma"} <= flags:
        out += ["-mavx2", "-mfma"]
    return out


def instruction_set() -> str:
    return "avx2+fma" if "-mavx2" in compile_flags() else "portable C"


def _compiler() -> str:
    for candidate in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
        if candidate:
            exe = shutil.which(candidate.split()[0])
            if exe:
                return exe
    raise ConfigError(
        "the cpu engine builds its kernels with a C compiler and none was found (install "
        "gcc, e.g. apt-get install gcc), or set SWITCHBOARD_LLM__ENGINE=transformers"
    )


def prebuild(cache_dir: Path) -> list[Path]:
    """Both builds (AVX2+FMA and portable) ahead of time, e.g. into a container image whose
    runtime has no compiler: at start the engine loads the one for the CPU it finds."""
    builds = [build(cache_dir, compile_flags(set()))]
    try:
        builds.append(build(cache_dir, compile_flags({"avx2", "fma"})))
    except ConfigError as exc:  # not an x86 compiler: the portable build serves
        log.info("no AVX2 build: %s", exc)
    return builds


def build(cache_dir: Path, flags: list[str] | None = None) -> Path:
    """The kernel library for this CPU (or `flags`), compiled into `cache_dir/kernels` once."""
    flags = compile_flags() if flags is None else flags
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    target = cache_dir / "kernels" / f"qmatmul-{digest}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler = _compiler()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run(
            [compiler, *flags, "-o", str(built), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ConfigError(
                f"building the cpu engine's kernels failed ({compiler}): "
                f"{result.stderr.strip()[-500:]}; set SWITCHBOARD_LLM__ENGINE=transformers"
            )
        os.replace(built, target)
    log.info("cpu engine kernels built (%s): %s", " ".join(flags), target)
    return target


def load(cache_dir: Path) -> Any:
    """The loaded kernel library (built first if needed); one per process."""
    global _lib
    with _lock:
        if _lib is None:
            lib = ctypes.CDLL(str(build(cache_dir)))
            p, i = ctypes.c_void_p, ctypes.c_int
            lib.qmm_par.argtypes = [i, i, i, i, p, p, p, p, p, p, p, i]
            lib.qmm_par.restype = None
            lib.dequant_par.argtypes = [i, i, i, p, p, p, p, i]
            lib.dequant_par.restype = None
            lib.group_sums.argtypes = [i, i, i, p, p]
            lib.group_sums.restype = None
            _lib = lib
        return _lib


def _ptr(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


class QLinear(torch.nn.Module):
    """y = x W^T + b with W held as integer codes and group scales (see codes.py)."""

    codes: torch.Tensor
    scales: torch.Tensor
    offsets: torch.Tensor | None
    bias: torch.Tensor | None

    def __init__(self, codes: Codes, bias: torch.Tensor | None, lib: Any) -> None:
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.group = codes.group
        self.exact = codes.exact
        self.lib = lib
        self.register_buffer("codes", torch.from_numpy(np.ascontiguousarray(codes.codes)))
        self.register_buffer("scales", torch.from_numpy(np.ascontiguousarray(codes.scales)))
        offsets = None if codes.offsets is None else np.ascontiguousarray(codes.offsets)
        self.register_buffer("offsets", None if offsets is None else torch.from_numpy(offsets))
        self.register_buffer("bias", None if bias is None else bias.float().contiguous())
        self.lora: list[tuple[torch.Tensor, torch.Tensor, float]] = []

    def weight_float(self) -> torch.Tensor:
        """W as fp32 (for large products and for tests)."""
        out = torch.empty((self.out_features, self.in_features), dtype=torch.float32)
        self.lib.dequant_par(
            self.out_features,
            self.in_features,
            self.group,
            _ptr(self.codes),
            _ptr(self.scales),
            _ptr(self.offsets),
            _ptr(out),
            torch.get_num_threads(),
        )
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features)
        if flat.dtype != torch.float32:
            flat = flat.float()
        flat = flat.contiguous()
        rows = flat.shape[0]
        if rows > MAX_ROWS:
            y = torch.nn.functional.linear(flat, self.weight_float(), self.bias)
        else:
            y = torch.empty((rows, self.out_features), dtype=torch.float32)
            sums = None
            if self.offsets is not None:
                sums = torch.empty((rows, self.in_features // self.group), dtype=torch.float32)
                self.lib.group_sums(rows, self.in_features, self.group, _ptr(flat), _ptr(sums))
            self.lib.qmm_par(
                rows,
                self.out_features,
                self.in_features,
                self.group,
                _ptr(flat),
                _ptr(self.codes),
                _ptr(self.scales),
                _ptr(self.offsets),
                _ptr(sums),
                _ptr(self.bias),
                _ptr(y),
                torch.get_num_threads(),
            )
        for a, b, scale in self.lora:  # a runtime LoRA adapter: + scale * (x A^T) B^T
            y = y + scale * torch.nn.functional.linear(torch.nn.functional.linear(flat, a), b)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"group={self.group}, exact={self.exact}, lora={len(self.lora)}"
        )


class QEmbedding(torch.nn.Module):
    """An embedding table held as codes: only the looked-up rows are expanded."""

    codes: torch.Tensor
    scales: torch.Tensor
    offsets: torch.Tensor | None

    def __init__(self, codes: Codes) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = codes.shape
        self.group = codes.group
        self.register_buffer("codes", torch.from_numpy(np.ascontiguousarray(codes.codes)))
        self.register_buffer("scales", torch.from_numpy(np.ascontiguousarray(codes.scales)))
        offsets = None if codes.offsets is None else np.ascontiguousarray(codes.offsets)
        self.register_buffer("offsets", None if offsets is None else torch.from_numpy(offsets))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = self.codes.index_select(0, flat).float()
        rows = rows.view(len(flat), -1, self.group) * self.scales.index_select(0, flat)[..., None]
        if self.offsets is not None:
            rows = rows + self.offsets.index_select(0, flat)[..., None]
        return rows.reshape(*ids.shape, self.embedding_dim)


class FusedInput(torch.nn.Module):
    """Several QLinears that read the same input (q/k/v; gate/up), computed in one pass.

    The model calls each part with the same tensor in turn; the first call computes all of
    them and the others take their slice. One pass reads the input once and splits one
    bigger product between the threads, instead of three small ones.
    """

    def __init__(self, layers: list[QLinear], lib: Any) -> None:
        super().__init__()
        groups = {layer.group for layer in layers}
        assert len(groups) == 1 and len({layer.in_features for layer in layers}) == 1
        with_offsets = [layer.offsets is not None for layer in layers]
        zeros = [torch.zeros_like(layer.scales) for layer in layers]
        codes = Codes(
            torch.cat([layer.codes for layer in layers]).numpy(),
            torch.cat([layer.scales for layer in layers]).numpy(),
            torch.cat(
                [
                    layer.offsets if layer.offsets is not None else zero
                    for layer, zero in zip(layers, zeros, strict=True)
                ]
            ).numpy()
            if any(with_offsets)
            else None,
            groups.pop(),
            all(layer.exact for layer in layers),
        )
        biases = [layer.bias for layer in layers]
        bias = (
            torch.cat(
                [
                    b if b is not None else torch.zeros(layer.out_features)
                    for b, layer in zip(biases, layers, strict=True)
                ]
            )
            if any(b is not None for b in biases)
            else None
        )
        self.whole = QLinear(codes, bias, lib)
        bounds = [0]
        for layer in layers:
            bounds.append(bounds[-1] + layer.out_features)
        self.parts = torch.nn.ModuleList(
            FusedPart(self, start, end) for start, end in itertools.pairwise(bounds)
        )
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def forget(self) -> None:
        self._input = self._output = None

    def output_for(self, x: torch.Tensor) -> torch.Tensor:
        if x is not self._input:
            self._input, self._output = x, self.whole(x)
        assert self._output is not None
        return self._output


class FusedPart(torch.nn.Module):
    """One of a `FusedInput`'s layers, in the place the model calls it."""

    fused: FusedInput

    def __init__(self, fused: FusedInput, start: int, end: int) -> None:
        super().__init__()
        object.__setattr__(self, "fused", fused)  # not a submodule: no cycle in the tree
        self.start, self.end = start, end
        self.in_features, self.out_features = fused.whole.in_features, end - start
        self.lora: list[tuple[torch.Tensor, torch.Tensor, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fused.output_for(x)[..., self.start : self.end].contiguous()
        if self.end == self.fused.whole.out_features:  # the last part: let the output go
            self.fused.forget()
        if self.lora:
            flat = x.reshape(-1, self.in_features).float()
            for a, b, scale in self.lora:
                extra = torch.nn.functional.linear(torch.nn.functional.linear(flat, a), b)
                y = y + scale * extra.reshape(y.shape)
        return y
