"""A lean forward pass of a BERT sentence encoder for one text, compiled with TorchScript.

sentence-transformers runs a model through Hugging Face's `BertModel`: a few hundred Python
calls per text, and each of them needs Python's global lock. While another thread runs
Python (the PII stage's presidio and spaCy on the policy worker), every one of those calls
waits for the lock, so an embedding begun beside the PII stage barely ran beside it: with
a busy Python thread alongside, a 300-character message took 555 ms instead of 10.

`LeanBert` is the same arithmetic in one TorchScript graph, which runs without the lock:
the query, key and value projections fused into one matrix product, PyTorch's attention
kernel, mean pooling over the one text (no padding), L2 normalization. On 2 cores a
300-character message took 6.0 ms instead of 10.5 ms alone, and 28 ms instead of 555 ms
beside the busy thread. `lean_encoder` builds it only for the models it reproduces (a BERT
encoder, mean pooling, nothing after but normalization) and only when its vector for a probe
text matches sentence-transformers' own; otherwise the caller keeps sentence-transformers.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

# The lean vector must be this close (cosine) to sentence-transformers' for the probe.
AGREEMENT = 0.999
PROBE = "Where is my order? It was due on Monday and the tracking page has not changed."
# Text lengths (in tokens) run once at load, for oneDNN's kernels (`LeanEncoder.warm`).
WARM_TOKENS = 128
_WARMED: set[tuple[object, ...]] = set()


class LeanEncoder:
    """`encode(text)`: the (1, dim) float32 unit vector `model.encode` computes for `text`."""

    def __init__(
        self, graph: Any, preprocess: Any, shape: tuple[object, ...], longest: int
    ) -> None:
        self._graph = graph
        self._preprocess = preprocess
        self._shape = shape  # what oneDNN's kernels depend on: dtype and matrix sizes
        self._longest = longest

    def encode(self, text: str) -> Tensor:
        ids = self._preprocess([text])["input_ids"]
        with torch.inference_mode():
            vector: Tensor = self._graph(ids)
        return vector

    def warm(self) -> None:
        """Run every text length up to `WARM_TOKENS` once, once per process and model shape.

        oneDNN builds its kernels for each matrix shape (and thread count: call this with
        the thread count texts are embedded with) the first time it meets it, and keeps them
        for the whole process: a message of a length not seen before took 3 ms more, up to
        10. Lengths 3-128 (messages of up to about 500 characters) took 1.1 s on 2 cores.
        """
        if self._shape in _WARMED:
            return
        _WARMED.add(self._shape)
        with torch.inference_mode():
            for length in range(3, min(WARM_TOKENS, self._longest) + 1):
                self._graph(torch.full((1, length), 1000, dtype=torch.long))


def lean_encoder(model: SentenceTransformer) -> LeanEncoder | None:
    """The lean pass for `model`; None where this module does not reproduce it (the caller
    then uses `model.encode`)."""
    bert = _bert(model)
    if bert is None:
        return None
    lean = LeanBert(bert).eval().to(next(bert.parameters()).dtype)
    with warnings.catch_warnings():
        # Deprecated in favour of torch.compile, which adds a C++ build at start-up and whose
        # compiled graph is called from Python op by op: the lock again. Kept while it works.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            graph: Any = torch.jit.script(lean)
        except Exception as exc:  # TorchScript gone or changed: the eager module still helps
            log.info("embeddings: TorchScript unavailable (%s); lean encoder runs eagerly", exc)
            graph = lean
    config = bert.config
    shape = (lean.type0.dtype, config.hidden_size, config.intermediate_size)
    encoder = LeanEncoder(graph, model[0].preprocess, shape, lean.positions.num_embeddings)
    expected = model.encode([PROBE], convert_to_tensor=True, show_progress_bar=False).float()
    got = encoder.encode(PROBE)
    agreement = float(torch.nn.functional.cosine_similarity(got, expected.reshape(got.shape)))
    if agreement < AGREEMENT:
        log.warning(
            "embeddings: the lean encoder disagrees with sentence-transformers "
            "(cosine %.4f); using sentence-transformers",
            agreement,
        )
        return None
    return encoder


def _bert(model: SentenceTransformer) -> Any | None:
    """The `BertModel` inside `model` if the lean pass reproduces `model`, else None."""
    modules = list(model)
    if not 2 <= len(modules) <= 3:
        return None
    transformer, pooling = modules[0], modules[1]
    bert: Any = getattr(transformer, "auto_model", None)
    config = getattr(bert, "config", None)
    if (
        config is None
        or getattr(config, "model_type", None) != "bert"
        or getattr(config, "hidden_act", None) != "gelu"
        or getattr(config, "position_embedding_type", "absolute") != "absolute"
        or getattr(pooling, "pooling_mode", None) != "mean"
        or not getattr(pooling, "include_prompt", True)
    ):
        return None
    if any(parameter.device.type != "cpu" for parameter in bert.parameters()):
        return None
    if len(modules) == 3 and type(modules[2]).__name__ != "Normalize":
        return None
    return bert


class _Layer(nn.Module):
    """One encoder layer: attention and feed-forward, each with its residual and norm."""

    def __init__(self, layer: Any, heads: int) -> None:
        super().__init__()
        attention = layer.attention
        own = attention.self
        self.qkv = nn.Linear(own.query.in_features, 3 * own.query.out_features)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([own.query.weight, own.key.weight, own.value.weight]))
            self.qkv.bias.copy_(torch.cat([own.query.bias, own.key.bias, own.value.bias]))
        self.out = attention.output.dense
        self.norm_attention = attention.output.LayerNorm
        self.up = layer.intermediate.dense
        self.down = layer.output.dense
        self.norm_output = layer.output.LayerNorm
        self.heads = heads

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(1, 2).reshape(batch, length, width)
        x = self.norm_attention(self.out(attended) + x)
        out: Tensor = self.norm_output(self.down(F.gelu(self.up(x))) + x)
        return out


class LeanBert(nn.Module):
    """A BERT encoder's forward pass for one unpadded text, mean-pooled and normalized."""

    def __init__(self, bert: Any) -> None:
        super().__init__()
        embeddings = bert.embeddings
        self.words = embeddings.word_embeddings
        self.positions = embeddings.position_embeddings
        self.norm = embeddings.LayerNorm
        # Every token is of type 0 for a single text.
        self.type0 = nn.Parameter(embeddings.token_type_embeddings.weight[0].detach().clone())
        heads = bert.config.num_attention_heads
        self.layers = nn.ModuleList([_Layer(layer, heads) for layer in bert.encoder.layer])

    def forward(self, ids: Tensor) -> Tensor:
        """ids: (1, length) of one text, special tokens included, no padding."""
        length = ids.shape[1]
        x = self.norm(self.words(ids) + self.positions.weight[:length] + self.type0)
        for layer in self.layers:
            x = layer(x)
        return F.normalize(x.float().mean(1), dim=1)
