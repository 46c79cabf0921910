"""A client for the Rasa action server protocol (rasa-sdk 3.x), over HTTP.

`POST {url}/webhook` with `{"next_action", "sender_id", "tracker", "domain", "domain_digest",
"version"}`; the answer is `{"events": [...], "responses": [...]}`. The server answers 449
when it has no domain for the digest sent: the call is repeated with the full domain (we
send the domain only then, so steady-state calls stay small). 404 (unknown action), 400
(the action rejected the call), 500 (the action raised) and anything that is not that JSON
become `ActionFailed` with the server's own message. `GET {url}/actions` lists the actions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "3.21.0"  # the rasa-sdk version whose request shape this sends


class ActionFailed(Exception):
    """The action could not run: the server is down, slow, or answered an error."""

    def __init__(self, action: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{action}: {reason}")
        self.action = action
        self.reason = reason
        self.status = status


class RasaActionClient:
    """Calls one action server."""

    def __init__(self, url: str, timeout_s: float, domain: dict[str, Any]) -> None:
        self.url = url.rstrip("/")
        self.domain = domain
        self.digest = hashlib.sha256(json.dumps(domain, sort_keys=True).encode()).hexdigest()
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self.domain_sends = 0  # how often the server asked for the domain (449)

    async def close(self) -> None:
        await self._http.aclose()

    async def healthy(self) -> bool:
        """Whether the action server answers its health check (`GET /health`), now."""
        try:
            response = await self._http.get(self.url + "/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def actions(self) -> list[str]:
        """The names of the actions the server has."""
        try:
            response = await self._http.get(self.url + "/actions")
            response.raise_for_status()
            return [str(item["name"]) for item in response.json()]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ActionFailed("(list)", f"cannot list actions: {exc}") from exc

    async def run(self, action: str, tracker: dict[str, Any]) -> dict[str, Any]:
        """Run `action` for `tracker`; `{"events": [...], "responses": [...]}`."""
        call: dict[str, Any] = {
            "next_action": action,
            "sender_id": tracker.get("sender_id", ""),
            "tracker": tracker,
            "domain_digest": self.digest,
            "version": PROTOCOL_VERSION,
        }
        response = await self._post(action, call)
        if response.status_code == 449:  # "send the domain": once more, with it
            self.domain_sends += 1
            response = await self._post(action, {**call, "domain": self.domain})
        if response.status_code != 200:
            raise ActionFailed(action, _error(response), response.status_code)
        try:
            result = response.json()
        except ValueError:
            raise ActionFailed(action, "the server's answer is not JSON", 200) from None
        if (
            not isinstance(result, dict)
            or not isinstance(result.get("events", []), list)
            or not isinstance(result.get("responses", []), list)
        ):
            raise ActionFailed(action, "the server's answer has no events/responses lists", 200)
        return {"events": result.get("events") or [], "responses": result.get("responses") or []}

    async def _post(self, action: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._http.post(self.url + "/webhook", json=body)
        except httpx.TimeoutException:
            raise ActionFailed(action, "the action server did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ActionFailed(action, f"the action server is unreachable ({exc})") from None


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return f"HTTP {response.status_code}: {message or response.text[:200]}"
