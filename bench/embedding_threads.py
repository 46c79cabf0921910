"""Single-text MiniLM embedding latency: the lean pass on one thread vs sentence-transformers.

    .venv/bin/python bench/embedding_threads.py [--messages 90]

A question or a message is embedded one at a time, for the topics stage, the retriever,
intents and the grounding check. PyTorch's OpenMP pool belongs to the thread that starts
it: embedded from several threads, or in a process where the language model has run on its
own scheduler thread, libgomp has more pool threads than cores and wakes them with system
calls for every operation. `knowledge.embeddings` therefore runs every embedding on one
thread, a single text without a pool, and through `knowledge.lean_encoder`'s TorchScript
pass, which does not wait for Python's lock while another thread runs Python.

Prints p50/p95 per 250-350 character message (presidio-evaluator's customer messages) for:
- "lean, one thread": `MiniLMEmbedder.embed`, as Switchboard runs it;
- "s-t, one thread": the same thread, through sentence-transformers (`lean=False`);
- "s-t, calling thread, pooled": sentence-transformers on the caller's thread with the
  process's thread count (the first baseline);
first in a process where only this thread has used torch, then after a second thread has
run a torch operation (what the language model's scheduler thread does), then while a
second thread runs the PII stage (presidio and spaCy) on other messages, as the policy
worker does while the topics stage embeds. A figure, not a pass/fail test; needs
`pip install --no-deps presidio-evaluator==0.3.2 faker==40.63.0`.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
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
from policies.pii import PresidioRedactor
from policies.schema import default_policy_path, load_policy


def figures(texts: Sequence[str], embed: Callable[[str], object], rounds: int = 2) -> str:
    ms: list[float] = []
    for round_ in range(rounds):  # the last round counts: the first settles the kernels
        ms = []
        for text in texts:
            text = text + " " * round_  # never the cache
            began = time.perf_counter()
            embed(text)
            ms.append((time.perf_counter() - began) * 1000)
    return f"p50 {statistics.median(ms):6.1f} p95 {pct(ms, 0.95):6.1f}"


class Beside:
    """Runs `work` over and over on a second thread while the block runs."""

    def __init__(self, work: Callable[[], object]) -> None:
        self._work = work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._work()

    def __enter__(self) -> Beside:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=90)
    args = parser.parse_args(argv)
    import torch

    samples = policy_pii.generate(args.messages * 4, seed=11)
    texts = policy_pii.long_messages([s.text for s in samples])[: args.messages]
    lean, plain = MiniLMEmbedder(), MiniLMEmbedder(lean=False)
    # Loaded here, on the main thread, so that the baseline's first row has this thread's
    # pool only; the embedding thread starts with the first `embed` and computes single
    # texts poolless.
    plain._model = plain._load()
    lean.warm_up()
    print(
        f"{len(texts)} messages of 250-350 characters, ms per message; "
        f"torch threads {torch.get_num_threads()}, dtype {lean.dtype_for('cpu')}"
    )
    contenders = {
        "lean, one thread": lambda text: lean.embed([text]),
        "s-t, one thread": lambda text: plain.embed([text]),
        # the model, right here on the caller's thread
        "s-t, calling thread, pooled": lambda text: plain._encode_here([text]),
    }
    print(f"{'':<38}" + "".join(f"{name:>28}" for name in contenders))

    def row(label: str) -> None:
        line = "".join(f"{figures(texts, embed):>28}" for embed in contenders.values())
        print(f"{label:<38}{line}", flush=True)

    row("only this thread has used torch")
    # A thread that has used torch and lives on, as the language model's scheduler does
    # (a pool ends with the thread that started it).
    other = ThreadPoolExecutor(max_workers=1)
    other.submit(lambda: torch.ones(256, 256) @ torch.ones(256, 256)).result()
    row("after a second thread has used torch")
    policy = load_policy(default_policy_path())
    redactor = PresidioRedactor(policy.pii)
    redactor.warm_up()
    others = iter(itertools.cycle(texts[::-1]))
    with Beside(lambda: redactor.redact(next(others))):
        row("beside the PII stage on another thread")


if __name__ == "__main__":
    main()
