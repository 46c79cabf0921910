"""The `LanguageModel` protocol, and `ScriptedModel`, its honest fake for unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: Literal["system", "user", "assistant"]
    content: str


def as_chat(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """Messages as chat templates and the OpenAI API take them."""
    return [{"role": m.role, "content": m.content} for m in messages]


def chat_template_ids(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """The prompt's token ids under the tokenizer's chat template, ready for the answer.

    When the last message is the assistant's, the model goes on from it (an answer cut
    short by a dead process is finished where it stopped).
    """
    cont = bool(messages) and messages[-1].role == "assistant"
    ids = tokenizer.apply_chat_template(
        as_chat(messages),
        add_generation_prompt=not cont,
        continue_final_message=cont,
        tokenize=True,
        return_dict=False,
    )
    return list(ids)


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Per-request generation limits."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    timeout_s: float = 120.0
    ignore_eos: bool = False  # benchmarks only: always produce max_new_tokens


class LanguageModel(Protocol):
    """A chat model that streams its answer as text pieces.

    `stream()` is an async generator; closing it early (the client went away) must stop
    the generation at the next step. Faults raise `bot.errors.ModelError`.
    """

    name: str

    def warm_up(self) -> None: ...

    def ready(self) -> bool: ...

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int: ...

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncGenerator[str, None]: ...

    async def close(self) -> None: ...


class ScriptedModel:
    """Replays scripted answers piece by piece; fails loudly on an unexpected call.

    `answers` is consumed in order, one per `stream()` call. Each answer is a list of
    pieces (streamed as given; an Exception among them is raised there, mid-answer) or an
    Exception to raise at once. The prompts it received are kept
    in `prompts` so tests can assert on what the model was shown.
    """

    name = "scripted"

    def __init__(
        self,
        answers: Sequence[Sequence[str | BaseException] | BaseException],
        delay_s: float = 0.0,
    ):
        self._answers = list(answers)
        self._delay_s = delay_s
        self.prompts: list[list[ChatMessage]] = []

    def warm_up(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncGenerator[str, None]:
        self.prompts.append(list(messages))
        if not self._answers:
            raise AssertionError(f"ScriptedModel: unexpected call #{len(self.prompts)}")
        answer = self._answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        for piece in answer:
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            if isinstance(piece, BaseException):
                raise piece  # a failure mid-answer
            yield piece

    async def close(self) -> None:
        return None
