"""Real server processes for tests: `python -m bot serve` on a free port, and a scripted
model (behind `tests.openai_server`) that answers them fast and predictably."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.llm.base import ChatMessage, GenerationParams

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ScriptedAnswers:
    """A model whose answer to a question is the script entry whose key the question holds.

    Streams the answer a word at a time, `delay_s` apart; when the last message is the
    assistant's (an answer cut short), streams only what follows it.
    """

    name = "scripted-answers"

    def __init__(self, script: dict[str, str], delay_s: float = 0.05) -> None:
        self.script = script
        self.delay_s = delay_s
        self.prompts: list[list[ChatMessage]] = []

    def warm_up(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content) // 4 + 4 for m in messages)

    def answer_for(self, question: str) -> str:
        for key, answer in self.script.items():
            if key.lower() in question.lower():
                return answer
        return "I'm not sure about that one."

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncGenerator[str, None]:
        self.prompts.append(list(messages))
        said = messages[-1].content if messages[-1].role == "assistant" else ""
        question = next(m.content for m in reversed(messages) if m.role == "user")
        answer = self.answer_for(question)
        rest = answer[len(said) :] if answer.startswith(said) else answer
        words = rest.split(" ")
        for i, word in enumerate(words):
            await asyncio.sleep(self.delay_s)
            yield word if i == len(words) - 1 else word + " "

    async def close(self) -> None:
        return None


@dataclass
class ServerProcess:
    """One `switchboard serve` process on its own port."""

    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready: {self.log_path.read_text()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
