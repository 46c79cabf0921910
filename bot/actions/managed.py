"""rasa-sdk's own action server for an actions package, run and watched by Switchboard.

The package runs under `python -m rasa_sdk --actions PACKAGE` on 127.0.0.1 and a free port,
with the configured Python (an environment of its own: rasa-sdk pins pydantic, websockets
and sanic below what Switchboard uses). It is started with the engine, restarted before the
next call if it died, and stopped (its whole process group) when Switchboard stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time

import httpx

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedActionServer:
    def __init__(self, python: str, package: str, directory: str) -> None:
        self.python = python
        self.package = package
        self.directory = directory
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def ensure(self, timeout_s: float = 60) -> None:
        """Running and answering, (re)started if needed."""
        async with self._lock:
            if self.alive():
                return
            if self.proc is not None:
                log.warning(
                    "actions: the %s server exited (%s); restarting it",
                    self.package,
                    self.proc.returncode,
                )
            self.starts += 1
            env = {**os.environ, "SANIC_HOST": "127.0.0.1"}
            self.proc = subprocess.Popen(  # noqa: ASYNC220 -- returns at once; no waiting
                [
                    self.python,
                    "-m",
                    "rasa_sdk",
                    "--actions",
                    self.package,
                    "--port",
                    str(self.port),
                ],
                cwd=self.directory,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + timeout_s
            async with httpx.AsyncClient(timeout=1) as http:
                while time.monotonic() < deadline:
                    if self.proc.poll() is not None:
                        raise RuntimeError(
                            f"the actions server for {self.package!r} exited with "
                            f"{self.proc.returncode}: is rasa-sdk installed for {self.python}?"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(self.url + "/health")).status_code == 200:
                            log.info("actions: serving %s on %s", self.package, self.url)
                            return
                    await asyncio.sleep(0.2)
            raise RuntimeError(f"the actions server for {self.package!r} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
