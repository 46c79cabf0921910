"""Policies reload when their file changes, without a restart.

`PolicyReloader` polls the file (size, mtime and a content hash), builds and warms a new
`PolicyEngine` off the event loop, and only then swaps it in: a turn takes one engine when it
starts and keeps it to the end, so no turn ever sees half of an old and half of a new policy.
A file that does not validate is refused with its line-accurate errors logged, and the old
policy keeps serving. The replaced engine is closed after `grace_s`, when turns that were
using it have finished. Around a swap the garbage collector is settled (`_freeze`, `_retire`):
the loaded models are kept out of its walks, and a replaced engine is still reclaimed.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from policies.engine import PolicyEngine
from policies.schema import PolicyFile, PolicyFileError, parse_policy

log = logging.getLogger(__name__)


class PolicyReloader:
    """Watches `path` and calls `swap(new_engine)` with a warmed engine for each valid change."""

    def __init__(
        self,
        path: Path,
        build: Callable[[PolicyFile], PolicyEngine],
        swap: Callable[[PolicyEngine], PolicyEngine],
        interval_s: float = 2.0,
        grace_s: float = 300.0,
    ) -> None:
        self._path = path
        self._build = build
        self._swap = swap
        self._interval = interval_s
        self._grace = grace_s
        self._signature = self._stat()
        self._digest = self._hash()
        self.reloads = 0
        self.last_error = ""

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = self._path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    def _hash(self) -> str:
        try:
            return hashlib.sha256(self._path.read_bytes()).hexdigest()
        except OSError:
            return ""

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self.check()

    async def check(self) -> bool:
        """Reload now if the file changed; True when a new policy was swapped in."""
        signature = self._stat()
        if signature is None and self._signature is not None:
            self._signature = None
            self._refuse(f"{self._path}: the policy file is gone (deleted or moved)")
            return False
        if signature is None or signature == self._signature:
            return False
        self._signature = signature
        try:
            text = self._path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self._refuse(f"{self._path}: cannot be read: {exc}")
            return False
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest == self._digest:
            return False  # touched, not changed
        self._digest = digest
        try:
            policy = parse_policy(text, str(self._path))
            engine = self._build(policy)
            await asyncio.to_thread(engine.warm_up)
        except PolicyFileError as exc:
            self._refuse(str(exc))
            return False
        except Exception as exc:  # a model that will not load: same outcome, keep serving
            self._refuse(f"{self._path}: {type(exc).__name__}: {exc}")
            return False
        old = self._swap(engine)
        self.reloads += 1
        self.last_error = ""
        log.info("policy file %s reloaded", self._path)
        _freeze()  # the new engine's models, out of the collector's walk like the first's
        asyncio.get_running_loop().call_later(self._grace, _retire, old)
        return True

    def _refuse(self, reason: str) -> None:
        self.last_error = reason
        log.error("policy file change refused; the previous policy keeps serving:\n%s", reason)


def _freeze() -> None:
    """Collect, then freeze what is left (`gc.freeze`): a full collection walks every object
    it tracks, and with a policy engine's presidio, spaCy and word lists among them one took
    270 ms in the middle of a turn. The server freezes its first engine at start."""
    gc.collect()
    gc.freeze()


def _retire(old: PolicyEngine) -> None:
    """Close a replaced engine, then let the collector reach it (once this call has let go of
    it): frozen objects are never collected, and its models' reference cycles would stay in
    memory for good."""
    old.close()
    asyncio.get_running_loop().call_soon(_reclaim)


def _reclaim() -> None:
    gc.unfreeze()
    _freeze()
