"""The OpenAI wire format without sockets: SSE events, chunks, error bodies."""

from __future__ import annotations

import json

import pytest

from bot.errors import ModelError
from bot.llm.base import ChatMessage, GenerationParams
from bot.llm.openai_protocol import (
    Chunk,
    SSEDecoder,
    chat_request,
    error_body_message,
    parse_chunk,
)


def _events(lines: list[str]) -> list[str]:
    decoder = SSEDecoder()
    events = [data for line in lines if (data := decoder.feed(line)) is not None]
    if (last := decoder.flush()) is not None:
        events.append(last)
    return events


@pytest.mark.parametrize(
    ("lines", "events"),
    [
        (["data: a", "", "data: b", ""], ["a", "b"]),
        (["data:a", ""], ["a"]),  # the space after the colon is optional
        (["data: one", "data: two", ""], ["one\ntwo"]),  # multi-line data joins with \n
        ([": keep-alive", "", "data: x", ""], ["x"]),  # comments are not events
        (["event: message", "id: 7", "data: x", ""], ["x"]),  # other fields are ignored
        (["data: tail"], ["tail"]),  # a last event without its blank line
        (["", "", ": ping"], []),
    ],
)
def test_sse_events_when_lines_arrive(lines: list[str], events: list[str]) -> None:
    assert _events(lines) == events


def _chunk(delta: object, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


@pytest.mark.parametrize(
    ("data", "chunk"),
    [
        ("[DONE]", Chunk(done=True)),
        (_chunk({"role": "assistant"}), Chunk()),
        (_chunk({"role": "assistant", "content": ""}), Chunk()),
        (_chunk({"content": "Hello"}), Chunk(text="Hello")),
        (_chunk({"content": None}), Chunk()),
        (_chunk({}, "stop"), Chunk(finish_reason="stop")),
        (_chunk({"content": "."}, "length"), Chunk(text=".", finish_reason="length")),
        (json.dumps({"choices": [], "usage": {"completion_tokens": 3}}), Chunk()),
    ],
)
def test_chunk_parsed_when_event_is_valid(data: str, chunk: Chunk) -> None:
    assert parse_chunk(data) == chunk


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"error": {"message": "CUDA out of memory", "code": 500}}', "CUDA out of memory"),
        ('{"error": "Input validation error"}', "Input validation error"),
        ("{not json", "malformed event"),
        ("[1, 2]", "unexpected event"),
    ],
)
def test_model_error_when_event_is_an_error_or_garbage(data: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_chunk(data)


@pytest.mark.parametrize("data", ['{"choices": [{"delta": "my card is 4111', '["4111 1111"]'])
def test_garbled_event_is_not_echoed_when_it_may_hold_model_text(data: str) -> None:
    # The error message is logged, and model output is not redacted at this point.
    with pytest.raises(ModelError) as caught:
        parse_chunk(data)
    assert "4111" not in caught.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"error": {"message": "max_tokens too large", "type": "BadRequestError"}}',
            "max_tokens too large",
        ),
        (b'{"object": "error", "message": "model not found", "code": 404}', "model not found"),
        (b'{"error": "Model is overloaded", "error_type": "overloaded"}', "Model is overloaded"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"", "(empty body)"),
    ],
)
def test_error_message_found_when_server_shapes_differ(body: bytes, message: str) -> None:
    assert error_body_message(body) == message


def test_request_body_when_streaming_a_chat() -> None:
    body = chat_request(
        "m", [ChatMessage("system", "s"), ChatMessage("user", "u")], GenerationParams(12, 0.5)
    )
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "max_tokens": 12,
        "temperature": 0.5,
        "stream": True,
    }


def test_ignore_eos_is_asked_only_when_the_caller_sets_it() -> None:
    prompt = [ChatMessage("user", "u")]
    assert chat_request("m", prompt, GenerationParams(8, ignore_eos=True))["ignore_eos"] is True
    assert "ignore_eos" not in chat_request("m", prompt, GenerationParams(8))
