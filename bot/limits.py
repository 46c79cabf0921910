"""Request bodies capped at the edge, before anything reads or parses them.

`BodyLimit` refuses an HTTP request whose body is larger than its route's cap with 413 and a
JSON error, whether it says so in `Content-Length` (refused before a byte is read) or
streams more than it declared (refused as soon as the cap is passed, the rest unread).
The body is read whole before the route runs (as every route here would read it anyway). The
admin API's document uploads have their own, larger cap; every other route has
`Settings.max_request_bytes`.
"""

from __future__ import annotations

import json
from typing import Any

# Admin uploads: the document cap (bot.admin.MAX_DOCUMENT_BYTES) plus multipart framing.
UPLOAD_PREFIX = "/admin/documents"


def _refusal(limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps(
        {
            "error": {
                "code": "request_too_large",
                "message": f"the request body is larger than {limit} bytes",
            }
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes (`upload_limit` for uploads)."""

    def __init__(self, app: Any, limit: int, upload_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    def _cap(self, path: str) -> int:
        return self.upload_limit if path.startswith(UPLOAD_PREFIX) else self.limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > cap
            except ValueError:
                too_large = False  # the server refuses a malformed length itself
            if too_large:
                await self._refuse(send, cap)
                return
        # Read the body first (at most `cap` bytes of it), then hand it to the app: nothing
        # downstream ever holds more than the cap.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > cap:
                await self._refuse(send, cap)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Any, cap: int) -> None:
        start, body = _refusal(cap)
        await send(start)
        await send(body)
