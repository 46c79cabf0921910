"""The policy engine: the input check, redaction for storage, and the output filter, per file.

Presidio and spaCy are synchronous and CPU-bound, so every call into the redactor runs on one
dedicated worker thread: the event loop never blocks, and the NLP pipeline is only ever used
from a single thread (spaCy does not promise thread safety for a shared pipeline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from bot.types import Passage
from policies.pii import PresidioRedactor, Redactor
from policies.schema import PolicyFile, default_policy_path, load_policy
from policies.stream import StreamingRedactor
from policies.verdicts import Allow, Verdict

T = TypeVar("T")


class PolicyEngine:
    """Applies one `PolicyFile` to a conversation's text, using one `Redactor`.

    Cheap to construct; `warm_up()` loads the redactor (seconds for presidio). The async
    methods may be called from any number of conversations at once: their redaction work is
    queued on the engine's single worker thread. `close()` stops that thread.
    """

    def __init__(self, policy: PolicyFile, redactor: Redactor) -> None:
        self._policy = policy
        self._redactor = redactor
        # Threads start on first use, so this costs nothing until the first call.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policies")

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> PolicyEngine:
        """The engine for the policy file at `path` (the bundled default when None)."""
        policy = load_policy(path if path is not None else default_policy_path())
        return cls(policy, PresidioRedactor(policy.pii))

    @property
    def policy(self) -> PolicyFile:
        """The validated policy file this engine applies."""
        return self._policy

    @property
    def no_answer_reply(self) -> str:
        """What to send when the help center has nothing on the question."""
        return self._policy.messages.no_answer

    @property
    def fallback_reply(self) -> str:
        """What to send when no answer can be produced (e.g. the model failed)."""
        return self._policy.messages.fallback

    def warm_up(self) -> None:
        """Load the redactor, on the worker thread that will use it. Blocks until done."""
        self._worker.submit(self._redactor.warm_up).result()

    async def check_input(self, text: str) -> Verdict:
        """The verdict on a user's message: `Allow` with PII replaced and the types found.

        Later stages (injection, topics, rate limits) may `Block`; redaction never does.
        """
        redaction = await self._run(self._redactor.redact, text)
        return Allow(redaction.text, redaction.entity_types)

    async def redact_for_storage(self, text: str) -> str:
        """`text` with PII replaced: the only form that may reach Redis, logs or training."""
        redaction = await self._run(self._redactor.redact, text)
        return redaction.text

    async def screen_passages(self, passages: Sequence[Passage]) -> list[Passage]:
        """Knowledge-base passages as the prompt may carry them: PII replaced.

        A help article with a phone number in it must not make the bot read it out, unless
        the policy's `pii.allow` lists it (the company's own contact details). This is also
        where passages will be screened for injected instructions.
        """
        if not passages:
            return []

        def redact_all() -> list[Passage]:
            return [replace(p, text=self._redactor.redact(p.text).text) for p in passages]

        return await self._run(redact_all)

    def output_filter(self) -> StreamingRedactor:
        """A new streaming filter for one answer; drive it with `feed` and `flush`."""
        return StreamingRedactor(self._redactor, self._policy.output.max_hold_chars)

    async def feed(self, output: StreamingRedactor, text: str) -> str:
        """Pass streamed model text through `output`; return what may be shown now.

        Most pieces only join the held text (on the event loop); the redactor's thread is
        asked only when a sentence or a forced cut could release something.
        """
        cuts = output.add(text)
        return await self._run(output.release, cuts) if cuts else ""

    async def flush(self, output: StreamingRedactor) -> str:
        """The answer ended (or failed): return the rest of `output`, redacted."""
        return await self._run(output.flush)

    def close(self) -> None:
        """Stop the worker thread; queued work is cancelled, the running call finishes."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, function, *args)
