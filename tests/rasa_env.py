"""A Rasa action server for tests: rasa-sdk in a virtual environment of its own.

rasa-sdk pins pydantic <2.14, websockets <16 and sanic 25.12 exactly, which Switchboard's
own stack has outgrown, so it never shares our environment: `build/rasa-venv` is created
on first use (`pip install rasa-sdk==3.21.1`, about 35 s) and reused after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.processes import ROOT, free_port

RASA_SDK = "rasa-sdk==3.21.1"
VENV = Path(os.environ.get("SWITCHBOARD_TEST_RASA_VENV", ROOT / "build" / "rasa-venv"))
EXAMPLES = ROOT / "examples" / "rasa_actions"


def rasa_python() -> Path:
    """The rasa-sdk environment's Python, made if missing."""
    python = VENV / "bin" / "python"
    ready = VENV / ".rasa-sdk-installed"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", RASA_SDK], check=True, timeout=600
        )
        ready.write_text(RASA_SDK)
    return python


class ActionServer:
    """`python -m rasa_sdk --actions order_actions` on a free port."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ActionServer:
        env = {**os.environ, "SANIC_HOST": "127.0.0.1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(rasa_python()),
                    "-m",
                    "rasa_sdk",
                    "--actions",
                    "order_actions",
                    "--port",
                    str(self.port),
                ],
                cwd=EXAMPLES,
                start_new_session=True,  # Sanic may fork workers: kill the whole group
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"action server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"action server not up: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL to the server and its worker: no chance to finish anything."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
