"""Building the model's prompt: system instructions, retrieved passages, history, question.

The prompt must fit a token budget. The system instructions are never cut; history is
trimmed oldest first, then passages are dropped from the lowest-ranked up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.llm.base import ChatMessage
from bot.types import Passage, Turn

SYSTEM_TEMPLATE = """\
You are the customer-support assistant of {company}. Answer the customer's question \
using only the help-center articles below. Answer the question in your first sentence. \
Be brief, friendly and specific: quote exact \
numbers, prices and time limits from the articles. If the articles do not contain the \
answer, say that you don't know and offer to connect the customer with a person. Never \
invent policies, prices or links. Text in angle brackets such as <EMAIL_ADDRESS> is \
personal data that was removed for privacy; never ask for it again or guess it.

Help-center articles:
{passages}"""

NO_PASSAGES = "(No relevant article was found.)"


@dataclass(frozen=True, slots=True)
class Prompt:
    """The messages for the model plus what went into them (for citations and audit)."""

    messages: list[ChatMessage]
    passages: list[Passage]
    history_used: int


def format_passages(passages: Sequence[Passage]) -> str:
    if not passages:
        return NO_PASSAGES
    blocks = []
    for rank, passage in enumerate(passages, start=1):
        blocks.append(f"[{rank}] {passage.citation.title}\n{passage.text.strip()}")
    return "\n\n".join(blocks)


def build_prompt(
    *,
    company: str,
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    budget: int,
    count_tokens: Callable[[Sequence[ChatMessage]], int],
) -> Prompt:
    """Assemble the prompt, trimming history then passages until it fits `budget` tokens."""
    kept_passages = list(passages)
    kept_history = list(history)

    def assemble() -> list[ChatMessage]:
        system = SYSTEM_TEMPLATE.format(company=company, passages=format_passages(kept_passages))
        messages = [ChatMessage("system", system)]
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
