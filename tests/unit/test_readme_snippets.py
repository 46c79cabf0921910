"""The README's webhook verification snippet works against what Switchboard sends."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from connectors.webhook.signature import sign

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> Callable[..., bool]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    code = next(b for b in blocks if "def verify_switchboard_signature" in b)
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)  # our own README
    verify = scope["verify_switchboard_signature"]
    assert callable(verify)
    return verify  # type: ignore[return-value]


def test_the_readme_snippet_verifies_switchboard_signatures() -> None:
    verify = _snippet()
    body = b'{"type": "message", "text": "Refunds take 5 to 10 days."}'
    header = sign(body, ["whsec-new"])
    assert verify(header, body, "whsec-new")
    assert not verify(header, body + b" ", "whsec-new")  # tampered
    assert not verify(header, body, "whsec-other")  # another secret
    rotated = sign(body, ["whsec-old", "whsec-new"])
    assert verify(rotated, body, "whsec-new") and verify(rotated, body, "whsec-old")
    stale = sign(body, ["whsec-new"], int(time.time()) - 301)
    assert not verify(stale, body, "whsec-new")
    assert not verify("garbage", body, "whsec-new")
    assert not verify("t=abc,v1=00", body, "whsec-new")
