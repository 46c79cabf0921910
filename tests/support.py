"""Test helpers shared by the suites: a live uvicorn server on a free port, a tiny model."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from bot.settings import LLMSettings, Settings
from bot.types import Passage
from knowledge.embeddings import Embedder, HashingEmbedder, Vectors

# The demo help center's abstention model, fitted on demo/eval/questions.jsonl (as `make demo`
# uses it); the bundled default is calibrated on TechQA.
DEMO_ABSTENTION = Path(__file__).resolve().parents[1] / "demo" / "abstain.json"


class LiveServer:
    """A real uvicorn server on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws_ping_interval=None
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # reported to the test thread by start()
            self.error = exc

    def start(self, timeout: float = 300) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"server failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.05)
        return self

    @property
    def port(self) -> int:
        sock: socket.socket = self.server.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def demo_settings(
    model: Path, index: Path, redis_url: str, data_dir: Path, prefix: str, **overrides: Any
) -> Settings:
    """The app's settings for a live test server: the tiny model, the demo help center with
    its abstention model, Redis under its own `prefix`; `max_new_tokens` 24 unless given."""
    llm = LLMSettings(model=str(model), max_new_tokens=overrides.pop("max_new_tokens", 24))
    return Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        data_dir=data_dir,
        llm=llm,
        knowledge={"index_dir": index, "abstention_model": DEMO_ABSTENTION},
        **overrides,
    )


@contextmanager
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


WORDS = (  # noqa: SIM905 -- a readable block of words beats a 76-line list
    "the a an to of and or in on for with your you we our is are be can will not it this that "
    "order orders return returns refund refunds shipping ship days day business within item "
    "items account password reset email card payment help article articles please thanks "
    "hello how long do i have what when where why who customer support person ask answer "
    "store credit free express standard track tracking link number"
).split()


def build_tiny_model(target: Path) -> Path:
    """A randomly initialised 2-layer Qwen2 with a small byte-level tokenizer and chat template.

    It produces nonsense fast: for plumbing tests of the real transformers engine only.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    # Byte-level BPE like Qwen2's own, so transformers' Qwen2 tokenizer class loads it as is.
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [" ".join(WORDS)] * 5,
        vocab_size=600,
        min_frequency=1,
        special_tokens=specials,
        show_progress=False,
    )
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=template,
    )
    vocab = tokenizer.get_vocab()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    model = Qwen2ForCausalLM(config)
    # Never pick end-of-sequence, so generation runs to max_new_tokens (tests rely on length).
    with torch.no_grad():
        model.lm_head.weight[vocab["<|im_end|>"]] = 0
        model.lm_head.bias = None
    model.generation_config.eos_token_id = None
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


class FixedRetriever:
    """A `Retriever` that returns the same passages for every query (or raises `error`)."""

    def __init__(
        self,
        passages: list[Passage],
        error: Exception | None = None,
        confidence: float | None = None,
        threshold: float | None = None,
    ) -> None:
        self.passages = passages
        self.error = error
        self.confidence = confidence
        self.threshold = threshold
        self.queries: list[str] = []

    def warm_up(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    async def search(self, query: str, k: int) -> list[Passage]:
        self.queries.append(query)
        if self.error is not None:
            raise self.error
        return self.passages[:k]

    async def search_with_confidence(
        self, query: str, k: int
    ) -> tuple[list[Passage], float | None]:
        return await self.search(query, k), self.confidence


def assert_policy_error(text: str, line: int, location: str, phrase: str) -> None:
    """`text` is refused as a policy file with an error at `line` and `location` whose
    reason contains `phrase`, printed as `bad.yaml:LINE: LOCATION: reason`."""
    from policies.schema import PolicyFileError, parse_policy

    try:
        parse_policy(text, "bad.yaml")
    except PolicyFileError as caught:
        errors = caught.errors
        assert (line, location) in [(found, where) for found, where, _ in errors], errors
        reason = next(reason for found, where, reason in errors if where == location)
        assert phrase in reason, reason
        assert f"bad.yaml:{line}: {location}: " in str(caught)
    else:
        raise AssertionError(f"the policy was accepted:\n{text}")


class CountingEmbedder:
    """An embedder (default: the hashing one) recording every text it embeds; fails on
    batch `fail_on` if set, as a crash mid-ingest."""

    def __init__(
        self, inner: Embedder | None = None, *, dim: int = 256, fail_on: int | None = None
    ) -> None:
        self._inner: Embedder = inner or HashingEmbedder(dim)
        self._fail_on = fail_on
        self.texts: list[str] = []
        self.batches = 0

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    def warm_up(self) -> None:
        self._inner.warm_up()

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.batches += 1
        if self.batches == self._fail_on:
            raise RuntimeError("embedding crashed")
        self.texts.extend(texts)
        return self._inner.embed(texts)


def ws_turn(
    ws: Any, text: str, client_id: str = "c1", timeout: float = 60
) -> tuple[list[str], dict[str, Any], list[dict[str, Any]]]:
    """Send a message on a chat websocket; its tokens, the frame that ended it, all frames.

    The turn ends with its final `message`, or an `error`.
    """
    ws.send(json.dumps({"type": "message", "text": text, "id": client_id}))
    tokens: list[str] = []
    frames: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv(timeout=timeout))
        frames.append(frame)
        if frame["type"] == "token":
            tokens.append(frame["text"])
        elif frame["type"] in ("message", "error"):
            return tokens, frame, frames


def _unescaped(value: str) -> str:
    """`value`, and the strings inside it when it is JSON: stored turns escape "ö" as
    "\\u00f6", and a search for "Sjöberg" in the raw value would find nothing."""
    try:
        return value + "\n" + json.dumps(json.loads(value), ensure_ascii=False)
    except ValueError:
        return value


def redis_text(client: Any, pattern: str) -> str:
    """Every key matching `pattern` and every value under it (strings, lists, hashes, sets,
    sorted sets, streams), as one searchable text. `client` decodes responses."""
    parts: list[str] = []
    for key in client.scan_iter(match=pattern):
        kind = client.type(key)
        if kind == "string":
            values = [client.get(key)]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [f"{k} {v}" for k, v in client.hgetall(key).items()]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        elif kind == "stream":
            values = [json.dumps(fields, ensure_ascii=False) for _, fields in client.xrange(key)]
        else:
            raise AssertionError(f"{key}: a Redis type this helper does not read: {kind}")
        parts.append(key)
        parts.extend(_unescaped(str(value)) for value in values)
    return "\n".join(parts)
