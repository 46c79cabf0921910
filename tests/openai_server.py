"""A small, real OpenAI-compatible HTTP server for tests, backed by any `LanguageModel`.

It serves `GET /v1/models` and `POST /v1/chat/completions` (SSE streaming or one JSON
answer) on 127.0.0.1 and a free port, in the shape vLLM uses. `behaviour` holds knobs for
fault tests (fail the first requests with 503, drop the connection mid-stream, slow chunks,
require an API key); `requests` records what each request received and how it ended.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bot.llm.base import ChatMessage, GenerationParams, LanguageModel
from tests.support import LiveServer


@dataclass
class Behaviour:
    """Fault knobs; tests may change them between requests."""

    fail_first: int = 0  # answer this many chat requests with 503 first
    die_after_chunks: int | None = None  # drop the connection after this many content chunks
    die_cleanly: bool = False  # ...or end the body properly there, without [DONE]
    chunk_delay_s: float = 0.0  # wait before each content chunk
    api_key: str | None = None  # require "Authorization: Bearer <api_key>"
    max_tokens_limit: int = 4096  # a larger max_tokens is refused with 400, like vLLM


@dataclass
class RecordedRequest:
    """One chat request as the server saw it, and how it ended."""

    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 200
    chunks_sent: int = 0
    completed: bool = False
    disconnected: bool = False  # the client went away before the answer ended
    ended: threading.Event = field(default_factory=threading.Event)  # set from the server thread


class _DropConnection(Exception):
    """Raised mid-stream on purpose: uvicorn then drops the connection without [DONE]."""


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


def _chunk(completion_id: str, model: str, delta: dict[str, str], finish: str | None) -> bytes:
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


class OpenAIServer:
    """An OpenAI-compatible server whose answers come from `model`, served as `name`."""

    def __init__(self, model: LanguageModel, name: str = "test-model") -> None:
        self.model = model
        self.name = name
        self.behaviour = Behaviour()
        self.requests: list[RecordedRequest] = []
        self._chat_requests = 0
        self.app = self._build_app()
        self.live = LiveServer(self.app)

    def reset(self, model: LanguageModel | None = None) -> None:
        """Forget past requests and knobs (and switch to `model`), for a shared server."""
        self.model = model or self.model
        self.behaviour = Behaviour()
        self.requests.clear()
        self._chat_requests = 0

    @property
    def base_url(self) -> str:
        return f"{self.live.http}/v1"

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models", response_model=None)
        async def models(request: Request) -> Response:
            if (refusal := self._check_key(request)) is not None:
                return refusal
            entry = {"id": self.name, "object": "model", "owned_by": "tests"}
            return JSONResponse({"object": "list", "data": [entry]})

        @app.post("/v1/chat/completions", response_model=None)
        async def chat(request: Request) -> Response:
            body = await request.json()
            record = RecordedRequest(dict(request.headers), body)
            self.requests.append(record)
            if (refusal := self._refusal(request, body)) is not None:
                record.status = refusal.status_code
                return refusal
            messages = [ChatMessage(m["role"], m["content"]) for m in body["messages"]]
            params = GenerationParams(
                max_new_tokens=body.get("max_tokens") or 256,
                temperature=body.get("temperature", 0.0),
            )
            if not body.get("stream"):  # Switchboard always streams
                return _error(400, "this test server only streams", "BadRequestError")
            return StreamingResponse(
                self._events(messages, params, record), media_type="text/event-stream"
            )

        return app

    def _check_key(self, request: Request) -> JSONResponse | None:
        expected = self.behaviour.api_key
        if expected and request.headers.get("authorization") != f"Bearer {expected}":
            return _error(401, "Incorrect API key provided.", "AuthenticationError")
        return None

    def _refusal(self, request: Request, body: dict[str, Any]) -> JSONResponse | None:
        if (refusal := self._check_key(request)) is not None:
            return refusal
        self._chat_requests += 1
        if self._chat_requests <= self.behaviour.fail_first:
            return _error(503, "The server is overloaded, try again.", "ServiceUnavailableError")
        if body.get("model") != self.name:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        limit = self.behaviour.max_tokens_limit
        if (body.get("max_tokens") or 0) > limit:
            message = f"max_tokens must be at most {limit}, got {body['max_tokens']}."
            return _error(400, message, "BadRequestError")
        return None

    async def _events(
        self, messages: list[ChatMessage], params: GenerationParams, record: RecordedRequest
    ) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        behaviour = self.behaviour
        try:
            yield _chunk(completion_id, self.name, {"role": "assistant"}, None)
            async with aclosing(self.model.stream(messages, params)) as pieces:
                async for piece in pieces:
                    if record.chunks_sent == behaviour.die_after_chunks:
                        if behaviour.die_cleanly:
                            return
                        raise _DropConnection("dropping the connection mid-stream (test knob)")
                    if behaviour.chunk_delay_s:
                        await asyncio.sleep(behaviour.chunk_delay_s)
                    yield _chunk(completion_id, self.name, {"content": piece}, None)
                    record.chunks_sent += 1
            # The server cannot tell "stop" from "length" through the protocol; "stop" it is.
            yield _chunk(completion_id, self.name, {}, "stop")
            yield b"data: [DONE]\n\n"
            record.completed = True
        except (asyncio.CancelledError, GeneratorExit):
            record.disconnected = True  # starlette cancels the response when the client goes
            raise
        finally:
            record.ended.set()


@contextmanager
def serve_openai(model: LanguageModel, name: str = "test-model") -> Iterator[OpenAIServer]:
    """A started `OpenAIServer` for `model`, stopped on exit."""
    server = OpenAIServer(model, name)
    server.live.start()
    try:
        yield server
    finally:
        server.live.stop()
