"""`switchboard finetune export`: stored conversations and FAQ articles as training JSONL.

Each line of the output is one chat-format example (the format `bot.llm.finetune.data`
reads), plus where it came from::

    {"messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "...", "weight": 0}, ...],
     "source": "conversation:<id>" | "faq:<file>#<question>"}

Conversations (from Redis) are used when they are worth learning from: closed, resolved by
a person, or with an answer rated 👍. Replies the model must not imitate (the policy's fixed
replies: blocked, no answer, fallback; and answers rated 👎) stay as context with
`"weight": 0`; a person's answers are ordinary targets. FAQ articles give one example per
question: a Markdown heading that ends with "?" and its section, or a `Q:`/`A:` block.

Every message passes the policy's `storage` point (PII redaction) before it is written,
and the summary counts what was removed. The file is written whole or not at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bot.errors import ConfigError
from bot.sessions import store_call
from bot.types import Turn
from policies.base import Context
from policies.engine import PolicyEngine

log = logging.getLogger(__name__)

# Assistant turns that are the policy's fixed replies, not answers (see `bot.types.Turn`).
FIXED_REPLIES = frozenset({"blocked", "no_answer", "fallback"})
FAQ_SUFFIXES = frozenset({".md", ".txt"})

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_QUESTION = re.compile(r"^\s*Q:\s*(.*)$")
_ANSWER = re.compile(r"^\s*A:\s*(.*)$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"\*\*|__|~~|[*`]")


@dataclass
class ExportSummary:
    """What an export wrote, for the closing report."""

    conversations: int = 0  # conversations written as examples
    skipped: int = 0  # conversations seen but not used (not eligible, or nothing to learn)
    faq: int = 0  # FAQ examples written
    entities: Counter[str] = field(default_factory=Counter)  # PII removed, by entity type

    @property
    def examples(self) -> int:
        """Lines written."""
        return self.conversations + self.faq


@dataclass(frozen=True, slots=True)
class _Message:
    role: str
    text: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class _Conversation:
    id: str
    created: float
    done: bool  # closed, or resolved by a person: every turn counts


async def export_examples(
    out: Path,
    policy: PolicyEngine,
    *,
    redis: Any | None,
    prefix: str = "sb:",
    kb: Sequence[Path] = (),
    since: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Write the training examples to `out` (JSONL) and say what was written.

    `redis` is a `redis.asyncio.Redis` with `decode_responses=True` (None: FAQ only);
    `prefix` its key prefix. `kb` lists FAQ files or folders (walked recursively). `since`
    keeps conversations updated at or after that unix time (older ones are not counted at
    all). `progress` is called with 1 per conversation looked at and per FAQ example.
    Conversations come first, by creation time, then FAQ examples in file order.
    Raises `ConfigError` for a missing output folder or knowledge path, `StoreUnavailable`
    when Redis fails; on any failure `out` is left as it was.
    """
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: the folder {out.parent} does not exist")
    articles = faq_files(kb)
    tick = progress or (lambda _n: None)
    await asyncio.to_thread(policy.warm_up)  # a no-op when the caller warmed it up
    summary = ExportSummary()
    partial = out.with_suffix(out.suffix + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as sink:
            if redis is not None:
                await _export_conversations(sink, policy, redis, prefix, since, summary, tick)
            for path, name in articles:
                await _export_faq(sink, policy, path, name, summary, tick)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return summary


# -- conversations ----------------------------------------------------------------------


async def _export_conversations(
    sink: TextIO,
    policy: PolicyEngine,
    redis: Any,
    prefix: str,
    since: float | None,
    summary: ExportSummary,
    tick: Callable[[int], None],
) -> None:
    ratings = await _ratings(redis, prefix)
    for conversation in await _conversations(redis, prefix, since):
        tick(1)
        rated = ratings.get(conversation.id, {})
        messages: list[_Message] = []
        if conversation.done or "up" in rated.values():
            turns = await _turns(redis, prefix, conversation.id)
            messages = _conversation_messages(turns, rated, whole=conversation.done)
        if not messages:
            summary.skipped += 1
            continue
        source = f"conversation:{conversation.id}"
        lines = await _redact(policy, messages, conversation.id, summary.entities)
        _write(sink, lines, source)
        summary.conversations += 1


def _conversation_messages(
    turns: Sequence[Turn], ratings: dict[str, str], *, whole: bool
) -> list[_Message]:
    """A conversation's turns as training messages (empty: nothing to learn from).

    `ratings` maps message ids to "up"/"down". With `whole` False (the conversation counts
    only for its 👍), the turns after the last 👍-rated answer are left out. The example
    starts with a user message and ends with an assistant one.
    """
    if not whole:
        liked = [
            i
            for i, turn in enumerate(turns)
            if turn.role == "assistant" and ratings.get(turn.message_id) == "up"
        ]
        turns = turns[: liked[-1] + 1] if liked else []
    messages = [_turn_message(turn, ratings) for turn in turns if turn.text.strip()]
    while messages and messages[0].role != "user":
        messages.pop(0)
    while messages and messages[-1].role != "assistant":
        messages.pop()
    if not any(m.role == "assistant" and m.weight for m in messages):
        return []
    return messages


def _turn_message(turn: Turn, ratings: dict[str, str]) -> _Message:
    if turn.role == "user":
        return _Message("user", turn.text)
    imitate = turn.kind not in FIXED_REPLIES and ratings.get(turn.message_id) != "down"
    return _Message("assistant", turn.text, 1 if imitate else 0)


async def _conversations(redis: Any, prefix: str, since: float | None) -> list[_Conversation]:
    """Every stored conversation updated since `since`, oldest first."""
    match = _glob_escape(prefix) + "conv:*"
    keys: set[str] = set()  # SCAN may return a key more than once
    cursor = 0
    while True:
        cursor, batch = await store_call(redis.scan(cursor, match=match, count=500, _type="hash"))
        keys.update(key for key in batch if ":" not in key[len(prefix) + len("conv:") :])
        if not cursor:
            break
    found = []
    for key in keys:
        data = await store_call(redis.hgetall(key))
        if not data:  # expired since the scan
            continue
        if since is not None and float(data.get("updated") or 0) < since:
            continue
        done = data.get("status") == "closed" or bool(data.get("m:resolved"))
        found.append(_Conversation(key[len(prefix) + 5 :], float(data.get("created") or 0), done))
    found.sort(key=lambda c: (c.created, c.id))
    return found


async def _ratings(redis: Any, prefix: str) -> dict[str, dict[str, str]]:
    """The feedback hash (see `bot.events.FeedbackStore`) as conversation -> message -> rating."""
    raw = await store_call(redis.hgetall(prefix + "feedback"))
    ratings: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        conversation, _, message = key.partition(":")
        try:
            rating = json.loads(value).get("rating")
        except (ValueError, AttributeError):
            log.warning("ignoring unreadable feedback %r", key)
            continue
        if isinstance(rating, str):
            ratings.setdefault(conversation, {})[message] = rating
    return ratings


async def _turns(redis: Any, prefix: str, conversation: str) -> list[Turn]:
    raw = await store_call(redis.lrange(f"{prefix}conv:{conversation}:turns", 0, -1))
    try:
        return [Turn.from_json(json.loads(item)) for item in raw]
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        log.warning("skipping conversation %s: a stored turn is unreadable (%s)", conversation, exc)
        return []


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis glob pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# -- FAQ articles -----------------------------------------------------------------------


def kb_vocabulary(kb: Sequence[Path]) -> frozenset[str]:
    """The words of the knowledge-base files under `kb`, lower case: the storage `scrub`
    stage leaves them alone (a product name in an FAQ answer is not a person's name)."""
    from knowledge.bm25 import tokenize

    return frozenset(
        word
        for path, _ in faq_files(kb)
        for word in tokenize(path.read_text(encoding="utf-8", errors="replace"))
    )


def faq_files(kb: Sequence[Path]) -> list[tuple[Path, str]]:
    """The FAQ files under `kb` with the names their examples cite: relative to the folder
    given, or the file's own name. Folders are walked recursively in sorted order."""
    files: list[tuple[Path, str]] = []
    for root in kb:
        if root.is_dir():
            files += [
                (path, path.relative_to(root).as_posix())
                for path in sorted(root.rglob("*"))
                if path.suffix.lower() in FAQ_SUFFIXES and path.is_file()
            ]
        elif root.is_file():
            if root.suffix.lower() not in FAQ_SUFFIXES:
                raise ConfigError(f"{root}: FAQ articles must be Markdown (.md) or text (.txt)")
            files.append((root, root.name))
        else:
            raise ConfigError(f"the knowledge path {root} does not exist")
    return files


async def _export_faq(
    sink: TextIO,
    policy: PolicyEngine,
    path: Path,
    name: str,
    summary: ExportSummary,
    tick: Callable[[int], None],
) -> None:
    text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
    for question, answer in faq_pairs(text):
        tick(1)
        messages = [_Message("user", question), _Message("assistant", answer)]
        lines = await _redact(policy, messages, "", summary.entities)
        # The question as written (redacted): the heading names the example's source.
        _write(sink, lines, f"faq:{name}#{lines[0]['content']}")
        summary.faq += 1


def faq_pairs(text: str) -> list[tuple[str, str]]:
    """The (question, answer) pairs of an FAQ-style article, in the order they appear.

    A Markdown heading (any level) ending with "?" is a question (markup removed); its
    answer is the section up to the next heading of the same or a higher level. `Q:` lines
    followed by `A:` lines are a question and its answer, which runs until the next `Q:`
    or heading. Code blocks and YAML front matter are not read; empty answers are dropped.
    """
    lines = _without_front_matter(text.splitlines())
    prose = list(_prose(lines))
    found = _heading_pairs(lines, prose) + _qa_pairs(lines, prose)
    found.sort(key=lambda item: item[0])
    return [(question, answer) for _, question, answer in found if question and answer]


def _heading_pairs(lines: list[str], prose: list[bool]) -> list[tuple[int, str, str]]:
    headings = [(i, *_heading(line)) for i, line in enumerate(lines) if prose[i]]
    headings = [(i, level, title) for i, level, title in headings if level]
    pairs = []
    for n, (start, level, title) in enumerate(headings):
        if not title.endswith("?"):
            continue
        end = next((i for i, lv, _ in headings[n + 1 :] if lv <= level), len(lines))
        pairs.append((start, title, "\n".join(lines[start + 1 : end]).strip()))
    return pairs


def _qa_pairs(lines: list[str], prose: list[bool]) -> list[tuple[int, str, str]]:
    pairs = []
    i = 0
    while i < len(lines):
        question = _QUESTION.match(lines[i]) if prose[i] else None
        i += 1
        if question is None:
            continue
        start, asked = i - 1, [question.group(1)]
        while i < len(lines) and _asks(lines[i], prose[i]):  # a question over several lines
            asked.append(lines[i])
            i += 1
        answer = _ANSWER.match(lines[i]) if i < len(lines) and prose[i] else None
        if answer is None:
            continue  # a Q: without an A:
        said = [answer.group(1)]
        i += 1
        while i < len(lines) and _answers(lines[i], prose[i]):
            said.append(lines[i])
            i += 1
        pairs.append((start, _plain(" ".join(asked)), "\n".join(said).strip()))
    return pairs


def _asks(line: str, prose: bool) -> bool:
    """Whether `line` continues a `Q:` question (prose up to the `A:` line)."""
    return prose and bool(line.strip()) and _answers(line, prose) and not _ANSWER.match(line)


def _answers(line: str, prose: bool) -> bool:
    """Whether `line` may continue a `Q:`/`A:` block: no new question, no heading."""
    return not prose or not (_QUESTION.match(line) or _heading(line)[0])


def _heading(line: str) -> tuple[int, str]:
    """(level, plain title) of an ATX heading; level 0 when `line` is not one."""
    match = _HEADING.match(line)
    if match is None:
        return 0, ""
    return len(match.group(1)), _plain(match.group(2))


def _plain(text: str) -> str:
    """`text` without inline Markdown (emphasis, code, links), whitespace collapsed."""
    text = _EMPHASIS.sub("", _LINK.sub(r"\1", text))
    return " ".join(text.split())


def _prose(lines: list[str]) -> Iterator[bool]:
    """For each line: False inside a fenced code block (its `#` lines are not headings)."""
    fence = ""
    for line in lines:
        match = _FENCE.match(line)
        if match and (not fence or match.group(1) == fence):
            fence = "" if fence else match.group(1)
            yield False
        else:
            yield not fence


def _without_front_matter(lines: list[str]) -> list[str]:
    """`lines` with a leading YAML front matter block blanked (its `#` lines are comments).
    Blanked, not removed, so that positions stay those of the file."""
    if not lines or lines[0].strip() != "---":
        return lines
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        return lines
    return [""] * (end + 1) + lines[end + 1 :]


# -- writing ----------------------------------------------------------------------------


async def _redact(
    policy: PolicyEngine, messages: list[_Message], conversation: str, entities: Counter[str]
) -> list[dict[str, Any]]:
    """The messages as written: every text through the `storage` point, found PII counted."""
    context = Context("storage", conversation=conversation)
    written: list[dict[str, Any]] = []
    for message in messages:
        redaction = await policy.storage_redaction(message.text, context)
        entities.update(found.entity_type for found in redaction.entities)
        item: dict[str, Any] = {"role": message.role, "content": redaction.text}
        if message.weight == 0:
            item["weight"] = 0
        written.append(item)
    return written


def _write(sink: TextIO, messages: list[dict[str, Any]], source: str) -> None:
    sink.write(json.dumps({"messages": messages, "source": source}, ensure_ascii=False) + "\n")
