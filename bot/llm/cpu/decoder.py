"""A lean forward pass for the decoder-only models the cpu engine runs (Qwen2, Llama).

The same arithmetic as transformers' modules, written as one loop over the layers with
fused operations (`torch.rms_norm`, q/k/v and gate/up as one product each, attention
with grouped heads in one call): decoding a token issues about a quarter of the Python
and torch calls that the transformers model does, which on a 2-core CPU was a third of
each step. It keeps the engine's interface: `(input_ids, attention_mask, position_ids,
cache, logits_to_keep)` in, `.logits` out, the KV cache a transformers `DynamicCache`
(the scheduler merges and trims its layers).

Models it does not recognise keep the transformers forward (`lean()` returns None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bot.llm.cpu.kernels import FusedPart, QLinear

_SUPPORTED = {"qwen2", "llama"}


@dataclass
class Output:
    logits: torch.Tensor


@dataclass
class _Layer:
    norm1: torch.Tensor
    norm2: torch.Tensor
    eps: float
    qkv: Any  # a module: [.., d] -> [.., q + k + v]
    sizes: tuple[int, int, int]
    o: Any
    gate_up: Any
    down: Any
    inter: int


class LeanDecoder:
    """The model's modules driven by one plain loop (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.config = model.config
        self.generation_config = model.generation_config
        inner = model.model
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.norm = inner.norm.weight
        self.norm_eps = float(inner.norm.variance_epsilon)
        self.lm_head = model.lm_head
        config = model.config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.layers = [self._layer(layer) for layer in inner.layers]

    def _layer(self, layer: Any) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
        qkv = _whole([q, k, v])
        gate, up = mlp.gate_proj, mlp.up_proj
        gate_up = _whole([gate, up])
        return _Layer(
            norm1=layer.input_layernorm.weight,
            norm2=layer.post_attention_layernorm.weight,
            eps=float(layer.input_layernorm.variance_epsilon),
            qkv=qkv,
            sizes=(q.out_features, k.out_features, v.out_features),
            o=attn.o_proj,
            gate_up=gate_up,
            down=mlp.down_proj,
            inter=gate.out_features,
        )

    def eval(self) -> LeanDecoder:
        return self

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
        **_: Any,
    ) -> Output:
        batch, length = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            if attention_mask is not None and attention_mask.shape[1] == past + length:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
            else:
                position_ids = torch.arange(past, past + length).unsqueeze(0).expand(batch, -1)
        hidden = self.embed(input_ids)
        cos, sin = self.rotary(hidden, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, D]
        mask = self._mask(attention_mask, batch, length, past)
        for index, layer in enumerate(self.layers):
            hidden = self._block(index, layer, hidden, cos, sin, mask, cache)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        hidden = torch.rms_norm(hidden, (hidden.shape[-1],), self.norm, self.norm_eps)
        return Output(self.lm_head(hidden))

    @staticmethod
    def _mask(
        attention_mask: torch.Tensor | None, batch: int, length: int, past: int
    ) -> torch.Tensor | None:
        """A boolean mask [B, 1, T, past+T] (True: may attend), or None where plain causal
        attention is exact (no padding)."""
        causal = None
        if length > 1 and past > 0:  # SDPA's is_causal aligns to the top left: spell it out
            causal = torch.ones(length, past + length, dtype=torch.bool).tril(diagonal=past)
        if attention_mask is None or bool(attention_mask.all()):
            return None if causal is None else causal[None, None]
        keys = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, S]
        if length == 1:
            return keys
        if causal is None:
            causal = torch.ones(length, length, dtype=torch.bool).tril()
        return keys & causal[None, None]

    def _block(
        self,
        index: int,
        layer: _Layer,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
    ) -> torch.Tensor:
        batch, length, _ = hidden.shape
        normed = torch.rms_norm(hidden, (hidden.shape[-1],), layer.norm1, layer.eps)
        q_size, k_size, _ = layer.sizes
        qkv = layer.qkv(normed)
        q = qkv[..., :q_size].reshape(batch, length, -1, self.head_dim).transpose(1, 2)
        k = qkv[..., q_size : q_size + k_size].reshape(batch, length, -1, self.head_dim)
        v = qkv[..., q_size + k_size :].reshape(batch, length, -1, self.head_dim)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(k, v, index)
        attended = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and length > 1,
            enable_gqa=self.kv_heads != self.heads,
        )
        attended = attended.transpose(1, 2).reshape(batch, length, -1)
        hidden = hidden + layer.o(attended)
        normed = torch.rms_norm(hidden, (hidden.shape[-1],), layer.norm2, layer.eps)
        gate_up = layer.gate_up(normed)
        activated = F.silu(gate_up[..., : layer.inter]) * gate_up[..., layer.inter :]
        out: torch.Tensor = hidden + layer.down(activated)
        return out


def _whole(parts: list[Any]) -> Any:
    """One product for layers fused without an adapter; else each part (with its adapter)."""
    first = parts[0]
    if isinstance(first, FusedPart) and not any(getattr(p, "lora", None) for p in parts):
        return first.fused.whole
    return _Concat(parts)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Concat:
    """Layers without a shared fused product (an adapter's parts, odd groups): one after
    the other, outputs side by side."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([layer(x) for layer in self.layers], dim=-1)


def lean(model: Any) -> LeanDecoder | None:
    """The lean forward for `model`, or None where it must keep transformers' own."""
    config = model.config
    if config.model_type not in _SUPPORTED or getattr(config, "hidden_act", "silu") != "silu":
        return None
    if getattr(config, "use_sliding_window", False) or getattr(config, "mlp_bias", False):
        return None
    for layer in model.model.layers:
        attn = layer.self_attn
        if not isinstance(attn.o_proj, QLinear) or not isinstance(layer.mlp.down_proj, QLinear):
            return None
    return LeanDecoder(model)
