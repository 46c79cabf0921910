"""A small Slack Web API client (httpx): JSON calls, Slack's errors, its rate limits.

On HTTP 429 Slack says in `Retry-After` how many seconds to wait: short waits are slept here
(a few times); a long one raises `RateLimited` so that the job queue retries the call later
instead of holding a worker. Slack's `{"ok": false, "error": ...}` raises `SlackApiError`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)

MAX_INLINE_WAIT_S = 10.0  # longer Retry-After waits go back to the job queue
INLINE_RETRIES = 3


class SlackApiError(Exception):
    """Slack answered `ok: false` (or something that is not its JSON)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


class RateLimited(Exception):
    """Slack asked to wait `retry_after` seconds before the next call."""

    def __init__(self, method: str, retry_after: float) -> None:
        super().__init__(f"{method}: rate limited for {retry_after:.0f} s")
        self.retry_after = retry_after


class SlackApi:
    """Calls Slack's Web API with the bot token."""

    def __init__(self, token: str, base_url: str, timeout_s: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )
        self.calls = 0

    async def call(self, method: str, **payload: Any) -> dict[str, Any]:
        """`POST {api}/{method}` with a JSON body; the response's JSON when `ok`."""
        for attempt in range(INLINE_RETRIES + 1):
            self.calls += 1
            response = await self._http.post(
                f"{self._base}/{method}",
                json={k: v for k, v in payload.items() if v is not None},
            )
            if response.status_code == 429:
                wait = _retry_after(response)
                if wait > MAX_INLINE_WAIT_S or attempt == INLINE_RETRIES:
                    raise RateLimited(method, wait)
                log.info("slack %s: rate limited; waiting %.1f s", method, wait)
                await asyncio.sleep(wait)
                continue
            if response.status_code >= 500:
                raise httpx.HTTPStatusError(
                    f"slack {method}: HTTP {response.status_code}",
                    request=response.request,
                    response=response,
                )
            try:
                data = response.json()
            except ValueError:
                raise SlackApiError(method, f"HTTP {response.status_code}, not JSON") from None
            if not isinstance(data, dict) or not data.get("ok"):
                error = data.get("error", "unknown") if isinstance(data, dict) else "not an object"
                raise SlackApiError(method, str(error))
            return data
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._http.aclose()


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
