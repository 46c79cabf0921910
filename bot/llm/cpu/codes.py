"""A GGUF file's weights as integer codes with group scales, exactly as the file holds them.

Every block type here stores a weight as `code * scale (+ offset)`, the scale (and offset)
shared by a group of 16 or 32 columns of one row:

| GGUF type | group | code | scale | offset |
|---|---|---|---|---|
| Q8_0 | 32 | int8 | d | - |
| Q5_0 | 32 | 5 bits - 16 | d | - |
| Q4_0 | 32 | 4 bits - 8 | d | - |
| Q4_1 | 32 | 4 bits | d | m |
| Q4_K | 32 | 4 bits | d * sc | -dmin * m |
| Q6_K | 16 | 6 bits - 32 | d * sc | - |

d (fp16) times a 6- or 8-bit sub-scale is exact in fp32, so `Codes.dequantize()` gives
gguf-py's de-quantized floats bit for bit (tested) and the kernels compute with the model's
own weights. Other types (and float tensors used as matrices) are re-quantized to Q8_0's
form, which is close but not exact; `Codes.exact` says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

QK_K = 256


@dataclass
class Codes:
    """W[n, k] = codes[n, k] * scales[n, k // group] (+ offsets[n, k // group])."""

    codes: np.ndarray  # int8 [N, K]
    scales: np.ndarray  # float32 [N, K // group]
    offsets: np.ndarray | None  # float32 [N, K // group] or None
    group: int
    exact: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.codes.shape[0]), int(self.codes.shape[1])

    def dequantize(self) -> np.ndarray:
        n, k = self.shape
        w = self.codes.reshape(n, k // self.group, self.group).astype(np.float32)
        w = w * self.scales[..., None]
        if self.offsets is not None:
            w = w + self.offsets[..., None]
        out: np.ndarray = w.reshape(n, k)
        return out

    def take_rows(self, rows: np.ndarray) -> Codes:
        return Codes(
            self.codes[rows],
            self.scales[rows],
            None if self.offsets is None else self.offsets[rows],
            self.group,
            self.exact,
        )


def _f16(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)


def _blocks(data: np.ndarray, rows: int, block_bytes: int) -> np.ndarray:
    return np.ascontiguousarray(data).reshape(rows, -1, block_bytes)


def _q8_0(data: np.ndarray, n: int, k: int) -> Codes:
    b = _blocks(data, n, 34)
    d = _f16(b[..., :2]).reshape(n, -1)
    q = np.ascontiguousarray(b[..., 2:]).view(np.int8).reshape(n, k)
    return Codes(q, d, None, 32)


def _q4_0(data: np.ndarray, n: int, k: int) -> Codes:
    b = _blocks(data, n, 18)
    d = _f16(b[..., :2]).reshape(n, -1)
    qs = b[..., 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - np.int8(8)
    return Codes(q.reshape(n, k).astype(np.int8), d, None, 32)


def _q4_1(data: np.ndarray, n: int, k: int) -> Codes:
    b = _blocks(data, n, 20)
    d = _f16(b[..., :2]).reshape(n, -1)
    m = _f16(b[..., 2:4]).reshape(n, -1)
    qs = b[..., 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8)
    return Codes(q.reshape(n, k), d, m, 32)


def _q5_0(data: np.ndarray, n: int, k: int) -> Codes:
    b = _blocks(data, n, 22)
    d = _f16(b[..., :2]).reshape(n, -1)
    qh = np.ascontiguousarray(b[..., 2:6]).view(np.uint32)  # [n, blocks, 1]
    high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)  # [n, blocks, 32]
    qs = b[..., 6:]
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
    q = (low | (high << 4)).astype(np.int8) - np.int8(16)
    return Codes(q.reshape(n, k), d, None, 32)


def _q4_k(data: np.ndarray, n: int, k: int) -> Codes:
    b = _blocks(data, n, 144)
    d = _f16(b[..., 0:2])  # [n, blocks, 1]
    dmin = _f16(b[..., 2:4])
    s = b[..., 4:16].reshape(n, -1, 3, 4)
    sd, sm, smd = s[..., 0, :], s[..., 1, :], s[..., 2, :]
    sc = np.concatenate([sd & 0x3F, (smd & 0x0F) | ((sd >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([sm & 0x3F, (smd >> 4) | ((sm >> 2) & 0x30)], axis=-1)
    scales = (d * sc.astype(np.float32)).reshape(n, -1)
    offsets = -(dmin * mn.astype(np.float32)).reshape(n, -1)
    qs = b[..., 16:].reshape(n, -1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(
        1, 1, 1, 2, 1
    )
    q = (qs & 0x0F).astype(np.int8).reshape(n, k)
    return Codes(q, scales, offsets, 32)


def _q6_k(data: np.ndarray, n: int, k: int) -> Codes:
    b = _blocks(data, n, 210)
    ql, qh = b[..., :128], b[..., 128:192]
    sc = np.ascontiguousarray(b[..., 192:208]).view(np.int8).astype(np.float32)
    d = _f16(b[..., 208:210])
    scales = (d * sc).reshape(n, -1)
    shifted = ql.reshape(n, -1, 2, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 1, 2, 1)
    low = (shifted & 0x0F).reshape(n, -1, 2, 128)
    shifted_high = qh.reshape(n, -1, 2, 1, 32) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(
        1, 1, 1, 4, 1
    )
    high = (shifted_high & 0x03).reshape(n, -1, 2, 128)
    q = (low | (high << 4)).astype(np.int8) - np.int8(32)
    return Codes(q.reshape(n, k), scales, None, 16)


_DECODERS = {
    "Q8_0": _q8_0,
    "Q4_0": _q4_0,
    "Q4_1": _q4_1,
    "Q5_0": _q5_0,
    "Q4_K": _q4_k,
    "Q6_K": _q6_k,
}


def quantize_q8(w: np.ndarray) -> Codes:
    """A float matrix in Q8_0's form (int8, one scale per 32 columns): close, not exact."""
    n, k = w.shape
    group = 32 if k % 32 == 0 else 16 if k % 16 == 0 else k
    g = w.astype(np.float32).reshape(n, k // group, group)
    scales = np.abs(g).max(axis=-1) / 127.0
    safe = np.where(scales == 0, 1.0, scales)
    q = np.clip(np.rint(g / safe[..., None]), -127, 127).astype(np.int8)
    return Codes(q.reshape(n, k), scales.astype(np.float32), None, group, exact=False)


def decode(
    type_name: str, data: np.ndarray, n: int, k: int, dequantized: Callable[[], np.ndarray]
) -> Codes:
    """The codes of one GGUF matrix of `n` rows and `k` columns.

    `dequantized()` (gguf-py's floats, [n, k]) is called only for block types without an
    exact form here, which are re-quantized.
    """
    decoder = _DECODERS.get(type_name)
    if decoder is None or k % (QK_K if type_name.endswith("_K") else 32):
        return quantize_q8(dequantized())
    return decoder(data, n, k)
