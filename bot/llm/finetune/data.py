"""Training data for `switchboard finetune`: chat-format JSONL in, redacted token ids out.

A data file holds one example per line::

    {"messages": [{"role": "system" | "user" | "assistant", "content": "...",
                   "weight": 0 | 1 (assistant only, optional, default 1)}]}

Other keys on a line (such as the export's `source`) are kept for the report and
ignored by training. Every message passes the policy's `storage` point (PII redaction)
before anything is tokenized; the loss counts only the assistant's tokens (those with
weight 1), so the model learns to answer like the data, not to write the customer's side.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from bot.errors import ConfigError

Role = Literal["system", "user", "assistant"]
IGNORE = -100  # the label of a token the loss leaves out (torch's cross_entropy default)
_MAX_ERRORS = 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TrainMessage:
    role: Role
    content: str
    weight: int = 1  # assistant messages only: 0 keeps it as context, not as a target


@dataclass(frozen=True, slots=True)
class Example:
    messages: tuple[TrainMessage, ...]
    line: int = 0  # where it came from in the data file (1-based)

    def as_chat(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def to_json(self) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        for m in self.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.role == "assistant" and m.weight == 0:
                item["weight"] = 0
            messages.append(item)
        return {"messages": messages}


def parse_example(data: object) -> Example:
    """One line's JSON as an `Example`; `ValueError` says what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError('expected an object like {"messages": [...]}')
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list')
    parsed = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"{where}.role must be system, user or assistant, not {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"{where}.content must be a non-empty string")
        weight = message.get("weight", 1)
        if weight not in (0, 1) or isinstance(weight, bool):
            raise ValueError(f"{where}.weight must be 0 or 1")
        if weight == 0 and role != "assistant":
            raise ValueError(f"{where}.weight applies to assistant messages only")
        parsed.append(TrainMessage(role, content, int(weight)))
    first = next((m for m in parsed if m.role != "system"), None)
    if first is None or first.role != "user":
        raise ValueError("the conversation must start with a user message (after any system)")
    if not any(m.role == "assistant" and m.weight for m in parsed):
        raise ValueError("there is no assistant message to learn from (weight 1)")
    return Example(tuple(parsed))


def read_jsonl(path: Path, what: str, parse: Callable[[Any], T], noun: str) -> list[tuple[int, T]]:
    """(line number, `parse(object)`) for each non-blank line of the JSONL file at `path`.

    `parse` raises `ValueError` with the reason a line is wrong; every bad line is collected
    and one `ConfigError` names them all as `FILE:LINE: reason` (the first 20). `what` is the
    file's role ("the training data"), `noun` what an empty one lacks ("examples").
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    rows, errors = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, parse(json.loads(line))))
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{number}: not JSON: {exc.msg} (column {exc.colno})")
        except ValueError as exc:
            errors.append(f"{path}:{number}: {exc}")
    if errors:
        more = len(errors) - _MAX_ERRORS
        shown = errors[:_MAX_ERRORS] + ([f"... and {more} more"] if more > 0 else [])
        raise ConfigError(f"{what} has errors:\n" + "\n".join(shown))
    if not rows:
        raise ConfigError(f"{path} holds no {noun} (one JSON object per line)")
    return rows


def read_examples(path: Path) -> list[Example]:
    """Every example in the JSONL file at `path`; a `ConfigError` names each bad line."""
    rows = read_jsonl(path, "the training data", parse_example, "examples")
    return [replace(example, line=number) for number, example in rows]


@dataclass
class RedactionSummary:
    """What the storage point removed from the training data."""

    messages: int = 0
    messages_changed: int = 0
    entities: Counter[str] = field(default_factory=Counter)


Redact = Callable[[str], tuple[str, Sequence[str]]]
"""Text in, (redacted text, the entity type of each replaced span) out."""


def redact_examples(
    examples: Sequence[Example],
    redact: Redact,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Example], RedactionSummary]:
    """Every message of every example through `redact`, counting what was removed."""
    summary = RedactionSummary()
    out = []
    for example in examples:
        messages = []
        for message in example.messages:
            text, found = redact(message.content)
            summary.messages += 1
            summary.messages_changed += text != message.content
            summary.entities.update(found)
            messages.append(replace(message, content=text))
        out.append(replace(example, messages=tuple(messages)))
        if progress is not None:
            progress(1)
    return out, summary


@dataclass(frozen=True, slots=True)
class Tokenized:
    """One example as the model sees it: `labels` is `IGNORE` except on trained tokens."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def _render(tokenizer: Any, chat: list[dict[str, str]], prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(
        chat, add_generation_prompt=prompt, tokenize=True, return_dict=False
    )
    return [int(i) for i in ids]


def tokenize(example: Example, tokenizer: Any, max_tokens: int) -> Tokenized:
    """The example under the tokenizer's chat template, the loss on its assistant turns.

    Each trained span runs from the end of the prompt that asks for that answer (the
    template's generation prompt) to the end of the answer's rendering, end-of-turn token
    included, so the model learns to stop too. Templates whose renderings of a shorter
    conversation are not prefixes of the longer one's are refused (the span would be wrong).
    """
    chat = example.as_chat()
    ids = _render(tokenizer, chat, prompt=False)
    labels = [IGNORE] * len(ids)
    for index, message in enumerate(example.messages):
        if message.role != "assistant" or not message.weight:
            continue
        before = _render(tokenizer, chat[:index], prompt=True)
        through = _render(tokenizer, chat[: index + 1], prompt=False)
        if through[: len(before)] != before or ids[: len(through)] != through:
            raise ConfigError(
                "the model's chat template renders a conversation differently from its "
                "beginning, so the assistant's turns cannot be told apart; use a model whose "
                "template is append-only (ChatML, Llama 3, ...)"
            )
        labels[len(before) : len(through)] = through[len(before) :]
    truncated = len(ids) > max_tokens
    return Tokenized(ids[:max_tokens], labels[:max_tokens], truncated)


def split(
    examples: Sequence[Example], eval_share: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, eval): a seeded shuffle, `eval_share` of it held out (at least one example
    when the share is above zero and there are two or more)."""
    if not 0 <= eval_share < 1:
        raise ConfigError("--eval-split must be at least 0 and below 1")
    order = list(examples)
    random.Random(seed).shuffle(order)
    held = round(len(order) * eval_share)
    if eval_share > 0 and len(order) > 1:
        held = max(held, 1)
    held = min(held, len(order) - 1)
    return order[held:], order[:held]


def write_examples(path: Path, examples: Sequence[Example]) -> None:
    """The examples as JSONL (what training saw, redacted), for anyone to audit."""
    with path.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")


def schedule(train_size: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Which training examples each step uses: epochs of seeded shuffles, cut into batches.

    Computed up front from the seed alone, so a resumed run takes the same batches as an
    uninterrupted one from where it stopped.
    """
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        order = list(range(train_size))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        batches += [order[i : i + batch_size] for i in range(0, train_size, batch_size)]
        epoch += 1
    return batches[:steps]


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    return -(-train_size // batch_size)
