"""Building the model's prompt: system instructions, retrieved passages, history, question.

The system message is rendered from the prompt file (`bot/prompt_file.py`). The prompt must
fit a token budget. The system instructions are never cut; history is trimmed oldest
first, then passages are dropped from the lowest-ranked up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from bot.llm.base import ChatMessage
from bot.prompt_file import Prompts, load_prompt
from bot.quotes import strip_markup
from bot.types import Passage, Turn

NO_PASSAGES = "(No relevant article was found.)"
# Text the PII stage put in place of personal data: <EMAIL_ADDRESS>, <PERSON_3f9a0c>...
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]+(?:[:_][0-9a-f]+)?>")


@dataclass(frozen=True, slots=True)
class Prompt:
    """The messages for the model plus what went into them (for citations and audit)."""

    messages: list[ChatMessage]
    passages: list[Passage]
    history_used: int


def passage_variables(passages: Sequence[Passage]) -> list[dict[str, Any]]:
    """The passages as the prompt template sees them."""
    return [
        {
            "rank": rank,
            "title": strip_markup(p.citation.title),
            "source": p.citation.source,
            # The model copies what it reads: "**5 business days**" would reach the
            # customer as literal asterisks.
            "text": strip_markup(p.text).strip(),
        }
        for rank, p in enumerate(passages, start=1)
    ]


@cache
def _default_prompts(company: str) -> Prompts:
    return load_prompt(None, company)


def build_prompt(
    *,
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    budget: int,
    count_tokens: Callable[[Sequence[ChatMessage]], int],
    company: str = "",
    prompts: Prompts | None = None,
    channel: str = "web",
    summary: str = "",
) -> Prompt:
    """Assemble the prompt, trimming history then passages until it fits `budget` tokens.

    `prompts` is the prompt file (the bundled default for `company` when None): the system
    message comes from its template, then its few-shot examples, the history, the question.
    """
    prompts = prompts or _default_prompts(company)
    kept_passages = list(passages)
    kept_history = list(history)
    examples: list[ChatMessage] = []
    for example in prompts.config.examples:
        examples += [ChatMessage("user", example.user), ChatMessage("assistant", example.assistant)]

    texts = [question, summary, *(t.text for t in history), *(p.text for p in passages)]
    redacted = any(PLACEHOLDER.search(text) for text in texts)

    def assemble() -> list[ChatMessage]:
        system = prompts.system(channel, passage_variables(kept_passages), summary, redacted)
        messages = [ChatMessage("system", system), *examples]
        messages += [ChatMessage(turn.role, turn.text) for turn in kept_history]
        messages.append(ChatMessage("user", question))
        return messages

    messages = assemble()
    while count_tokens(messages) > budget and (kept_history or kept_passages):
        if kept_history:
            # Drop a whole exchange where possible so the history never starts mid-answer.
            del kept_history[: 2 if len(kept_history) > 1 else 1]
        else:
            kept_passages.pop()
        messages = assemble()
    return Prompt(messages, kept_passages, len(kept_history))
