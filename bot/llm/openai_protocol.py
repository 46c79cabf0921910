"""The OpenAI chat-completions wire format, without I/O: request bodies, SSE events, chunks.

`OpenAIEngine` feeds response lines to `SSEDecoder` and each event's data to `parse_chunk`;
keeping the parsing here lets unit tests cover every server quirk without a socket.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.errors import ModelError
from bot.llm.base import ChatMessage, GenerationParams, as_chat

DONE = "[DONE]"
"""The data of the event that ends a stream."""


def chat_request(
    model: str, messages: Sequence[ChatMessage], params: GenerationParams
) -> dict[str, Any]:
    """The body of a streaming `POST /chat/completions`."""
    body: dict[str, Any] = {
        "model": model,
        "messages": as_chat(messages),
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "stream": True,
    }
    if params.ignore_eos:
        body["ignore_eos"] = True  # vLLM's extension; only benchmarks ask for it
    if messages and messages[-1].role == "assistant":
        # Go on from the unfinished answer (vLLM's and SGLang's chat-template options).
        body["add_generation_prompt"] = False
        body["continue_final_message"] = True
    return body


class SSEDecoder:
    """Assembles server-sent events from lines (terminators stripped); keeps `data` fields only.

    Per the SSE spec an event's `data:` lines are joined with newlines and the event is
    dispatched by a blank line; lines starting with ':' are comments (keep-alives).
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """The data of the event this line completes, if any."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """The data of a pending event (at end of stream, a last event may lack its blank line)."""
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data.clear()
        return data


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one event carries: new text (maybe empty), the finish reason, or the end marker."""

    text: str = ""
    finish_reason: str | None = None
    done: bool = False


def parse_chunk(data: str) -> Chunk:
    """One event's data: `[DONE]`, a `chat.completion.chunk`, or an error object.

    Raises `ModelError` for an error event (vLLM reports failures mid-stream this way) and
    for data that is not a chunk.
    """
    if data.strip() == DONE:
        return Chunk(done=True)
    try:
        payload = json.loads(data)
    except ValueError:
        # Never echo the event: it may carry model output, which is not redacted yet.
        raise ModelError(f"the model server sent a malformed event ({len(data)} chars)") from None
    if not isinstance(payload, dict):
        kind = type(payload).__name__
        raise ModelError(f"the model server sent an unexpected event (a JSON {kind})")
    if "error" in payload:
        raise ModelError(f"the model server failed mid-answer: {error_message(payload)}")
    choices = payload.get("choices") or []  # a final usage-only chunk has no choices
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return Chunk()
    delta = choices[0].get("delta")
    text = delta.get("content") if isinstance(delta, dict) else None
    reason = choices[0].get("finish_reason")
    return Chunk(
        text=text if isinstance(text, str) else "",
        finish_reason=reason if isinstance(reason, str) else None,
    )


def error_message(payload: object) -> str:
    """The human message in an error body, whichever server shape it has.

    OpenAI and recent vLLM: `{"error": {"message": ...}}`; older vLLM: `{"message": ...}`;
    TGI: `{"error": "..."}`; FastAPI-based servers: `{"detail": ...}`.
    """
    if isinstance(payload, dict):
        for key in ("error", "message", "detail"):
            value = payload.get(key)
            if isinstance(value, dict):
                return error_message(value)
            if isinstance(value, str) and value:
                return value
            if value:
                return json.dumps(value)[:500]
    return json.dumps(payload)[:500]


def error_body_message(body: bytes) -> str:
    """The message of an error response's body, JSON or not."""
    try:
        return error_message(json.loads(body))
    except ValueError:
        text = body.decode("utf-8", errors="replace").strip()
        return text[:500] or "(empty body)"
