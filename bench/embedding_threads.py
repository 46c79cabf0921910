"""Single-text MiniLM embedding latency: one embedding thread vs torch on every calling thread.

    .venv/bin/python bench/embedding_threads.py [--messages 90]

A question or a message is embedded one at a time, for the topics stage, the retriever,
intents and the grounding check. PyTorch's OpenMP pool belongs to the thread that starts
it: embedded from several threads, or in a process where the language model has run on its
own scheduler thread, libgomp has more pool threads than cores and wakes them with system
calls for every operation. `knowledge.embeddings` therefore runs every embedding on one
thread, a single text without a pool.

Prints p50/p95 per 250-350 character message (presidio-evaluator's customer messages) for:
- "one thread": `MiniLMEmbedder.embed`, as Switchboard runs it;
- "calling thread, pooled": the model called on the caller's thread with the process's
  thread count, as before (the baseline);
each first in a process where only this thread has used torch, then after a second thread
has run a torch operation (what the language model's scheduler thread does). A figure, not
a pass/fail test; needs `pip install --no-deps presidio-evaluator==0.3.2 faker==40.63.0`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_BENCH = ROOT / "bench"
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(ROOT))

from bench import policy_pii
from bench.policies import pct
from knowledge.embeddings import MiniLMEmbedder


def figures(texts: Sequence[str], embed: Callable[[str], object], rounds: int = 2) -> str:
    ms: list[float] = []
    for round_ in range(rounds):  # the last round counts: the first settles the kernels
        ms = []
        for text in texts:
            text = text + " " * round_  # never the cache
            began = time.perf_counter()
            embed(text)
            ms.append((time.perf_counter() - began) * 1000)
    return f"p50 {statistics.median(ms):6.1f}  p95 {pct(ms, 0.95):6.1f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=90)
    args = parser.parse_args(argv)
    import torch

    samples = policy_pii.generate(args.messages * 4, seed=11)
    texts = policy_pii.long_messages([s.text for s in samples])[: args.messages]
    embedder = MiniLMEmbedder()
    # Loaded here, on the main thread, so that the baseline's first row has this thread's
    # pool only; the embedding thread starts with `ours` and computes single texts poolless.
    embedder._model = embedder._load()
    print(
        f"{len(texts)} messages of 250-350 characters, ms per message; "
        f"torch threads {torch.get_num_threads()}, dtype {embedder.dtype_for('cpu')}"
    )
    ours = lambda text: embedder.embed([text])  # noqa: E731
    pooled = lambda text: embedder._encode_here([text])  # noqa: E731 -- the model, right here
    print(f"{'':<44} {'one thread':>22} {'calling thread, pooled':>26}")
    print(
        f"{'only this thread has used torch':<44} {figures(texts, ours):>22} "
        f"{figures(texts, pooled):>26}"
    )
    # A thread that has used torch and lives on, as the language model's scheduler does
    # (a pool ends with the thread that started it).
    other = ThreadPoolExecutor(max_workers=1)
    other.submit(lambda: torch.ones(256, 256) @ torch.ones(256, 256)).result()
    print(
        f"{'after a second thread has used torch':<44} {figures(texts, ours):>22} "
        f"{figures(texts, pooled):>26}"
    )


if __name__ == "__main__":
    main()
