"""`OpenAIEngine`: a remote model behind an OpenAI-compatible server (vLLM, TGI, llama.cpp).

Each answer is one streaming `POST {base_url}/chat/completions`. A request that fails before
its first token (connection refused or reset, HTTP 429 or 5xx) is retried with a short
exponential backoff; once a token has been passed on, a broken stream raises `ModelError`
rather than ending the answer early. Closing the stream closes the HTTP response, so the
server sees the disconnect and stops generating.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

import httpx

from bot.errors import ConfigError, ModelError
from bot.llm.base import ChatMessage, GenerationParams, chat_template_ids
from bot.llm.openai_protocol import SSEDecoder, chat_request, error_body_message, parse_chunk
from bot.settings import LLMSettings

log = logging.getLogger(__name__)

# Worth another try before the first token: the request never reached a working server.
_RETRYABLE_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


class _Retryable(Exception):
    """This attempt failed in a way a retry may fix (if nothing was passed on yet)."""


class OpenAIEngine:
    """A `LanguageModel` served by any OpenAI-compatible HTTP server.

    `settings.model` is the model name sent to the server. `backoff_s` is the first retry's
    delay (doubled per retry); `warm_up_wait_s` is how long `warm_up()` keeps trying to reach
    the server before giving up.
    """

    def __init__(
        self, settings: LLMSettings, *, backoff_s: float = 0.25, warm_up_wait_s: float = 10.0
    ) -> None:
        if settings.base_url is None:
            raise ConfigError("the openai engine needs SWITCHBOARD_LLM__BASE_URL")
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._backoff_s = backoff_s
        self._warm_up_wait_s = warm_up_wait_s
        self._timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        self.name = settings.model
        self._ready = False
        self._tokenizer: Any = None
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _headers(self) -> dict[str, str]:
        if self._settings.api_key is None:
            return {}
        return {"Authorization": f"Bearer {self._settings.api_key.get_secret_value()}"}

    def warm_up(self) -> None:
        """Check that the server answers `GET /models`, retrying for `warm_up_wait_s`."""
        if self._settings.tokenizer:
            self._load_tokenizer()
        url = f"{self._base_url}/models"
        deadline = time.monotonic() + self._warm_up_wait_s
        delay = self._backoff_s
        while True:
            try:
                response = httpx.get(url, headers=self._headers(), timeout=self._timeout)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    break
                problem = f"HTTP {response.status_code}: {error_body_message(response.content)}"
                if response.status_code < 500 and response.status_code != 429:
                    raise ModelError(
                        f"the model server at {url} answered {problem}; "
                        "check SWITCHBOARD_LLM__BASE_URL (it ends in /v1 for most servers) "
                        "and SWITCHBOARD_LLM__API_KEY"
                    )
            if time.monotonic() + delay > deadline:
                raise ModelError(
                    f"the model server at {url} did not answer within "
                    f"{self._warm_up_wait_s:g}s (last: {problem})"
                )
            log.info("model server at %s not ready (%s); retrying", url, problem)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        self._check_served(response)
        self._ready = True

    def _check_served(self, response: httpx.Response) -> None:
        # llama.cpp's server lists its file name but answers to any model name, so a missing
        # name is worth a warning, not a refusal to start.
        try:
            served = [str(entry.get("id")) for entry in response.json().get("data", [])]
        except (ValueError, AttributeError):
            served = []
        if self.name not in served:
            log.warning(
                "model %r is not among those %s lists: %s",
                self.name,
                self._base_url,
                ", ".join(served) or "(none)",
            )
        log.info("model server %s answers; using model %r", self._base_url, self.name)

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self._settings.tokenizer)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load SWITCHBOARD_LLM__TOKENIZER {self._settings.tokenizer!r}: {exc}"
                ) from exc
        return self._tokenizer

    def ready(self) -> bool:
        return self._ready

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens: exact with `settings.tokenizer` (its chat template), else estimated.

        The estimate is a quarter of the characters plus 4 per message and 3 for the
        assistant's turn: close for English text, low for scripts with more tokens per
        character (set a tokenizer where the prompt budget must be exact).
        """
        if self._settings.tokenizer:
            return len(chat_template_ids(self._load_tokenizer(), messages))
        return sum((len(m.content) + 3) // 4 + 4 for m in messages) + 3

    def _http(self) -> httpx.AsyncClient:
        # A client's pooled connections belong to one event loop; a new loop gets a new client.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._client_loop = loop
        return self._client

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncGenerator[str, None]:
        deadline = asyncio.get_running_loop().time() + params.timeout_s
        body = chat_request(self.name, messages, params)
        yielded = False
        for attempt in range(self._settings.retries + 1):
            try:
                # aclosing: a consumer that goes away must close the response now, not at GC.
                async with aclosing(self._attempt(body, deadline, params.timeout_s)) as pieces:
                    async for piece in pieces:
                        yielded = True
                        yield piece
                return
            except _Retryable as exc:
                if yielded:
                    raise ModelError(
                        f"the model server closed the stream mid-answer ({exc})"
                    ) from exc
                if attempt == self._settings.retries:
                    raise ModelError(
                        f"the model server at {self._base_url} failed "
                        f"{attempt + 1} time(s), last: {exc}"
                    ) from exc
                delay = self._backoff_s * 2**attempt
                if asyncio.get_running_loop().time() + delay >= deadline:
                    raise ModelError(f"generation timed out after {params.timeout_s:g}s") from exc
                log.warning("model server request failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def _attempt(
        self, body: dict[str, Any], deadline: float, timeout_s: float
    ) -> AsyncGenerator[str, None]:
        """One request's text pieces; raises `_Retryable` where another request may work."""
        client = self._http()
        request = client.build_request(
            "POST", f"{self._base_url}/chat/completions", json=body, headers=self._headers()
        )
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.send(request, stream=True)
        except TimeoutError:
            raise ModelError(f"generation timed out after {timeout_s:g}s") from None
        except _RETRYABLE_ERRORS as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.ReadTimeout:
            raise ModelError(self._silent()) from None
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise ModelError(
                f"cannot use the model server at {self._base_url} ({problem})"
            ) from exc
        # Closing the response drops the connection: that is how the server learns to stop.
        try:
            await self._check_status(response, deadline)
            async with aclosing(self._read(response, deadline, timeout_s)) as pieces:
                async for piece in pieces:
                    yield piece
        finally:
            await response.aclose()

    async def _read(
        self, response: httpx.Response, deadline: float, timeout_s: float
    ) -> AsyncGenerator[str, None]:
        """The text pieces of an event stream, up to [DONE] (or the end of a finished answer)."""
        lines, decoder = response.aiter_lines(), SSEDecoder()
        finish_reason: str | None = None
        try:
            while (line := await self._next_line(lines, deadline, timeout_s)) is not None:
                if (data := decoder.feed(line)) is None:
                    continue
                chunk = parse_chunk(data)
                if chunk.text:
                    yield chunk.text
                if chunk.done:
                    return
                finish_reason = chunk.finish_reason or finish_reason
        except _Retryable:
            if finish_reason is None:
                raise
            return  # the answer had finished; only [DONE] was lost
        # The end of the body without [DONE] is only an answer if it said it had finished.
        if (data := decoder.flush()) is not None and parse_chunk(data).done:
            return
        if finish_reason is None:
            raise _Retryable("the stream ended without [DONE]")

    async def _next_line(
        self, lines: AsyncIterator[str], deadline: float, timeout_s: float
    ) -> str | None:
        """The next line of the body, None at its end."""
        try:
            async with asyncio.timeout_at(deadline):
                return await anext(lines)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ModelError(f"generation timed out after {timeout_s:g}s") from None
        except httpx.ReadTimeout:
            raise ModelError(self._silent()) from None
        except _RETRYABLE_ERRORS as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ModelError(f"reading the model server's answer failed: {exc}") from exc

    def _silent(self) -> str:
        return f"the model server sent nothing for {self._settings.read_timeout_s:g}s"

    async def _check_status(self, response: httpx.Response, deadline: float) -> None:
        if response.status_code == 200:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise ModelError(
                    f"the model server answered {content_type or 'no content type'}, not an "
                    f"event stream: is {self._base_url} the root of an OpenAI-compatible API?"
                )
            return
        try:
            async with asyncio.timeout_at(deadline):
                message = error_body_message(await response.aread())
        except (TimeoutError, httpx.HTTPError):
            message = "(no readable body)"
        problem = f"HTTP {response.status_code}: {message}"
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(problem)
        raise ModelError(f"the model server refused the request ({problem})")

    async def close(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
