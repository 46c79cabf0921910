"""The grounding check: is each sentence of an answer supported by the retrieved passages?

Two measured signals per sentence. The sharp one is exact agreement of its *claims* (prices,
percentages, durations, dates, times, bare numbers, order-id-like tokens, e-mail addresses,
and capitalized names) with the claims of the passages: a claim the passages do not contain
is `missing`. The backstop is embedding similarity to the closest passage sentence (or pair
of sentences): a sentence about something the passages never mention scores low.

A sentence with no content (a greeting, "Happy to help!", an offer of a person, a question
back to the customer) is supported without a check: it has no claims, and once its
conversational phrases are removed at most two words remain, or it is a question.

Facts the customer gave (their order number) or a tool returned (an order's status) are not
in the help center: pass those texts as extra passages so that repeating them is supported.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from string import Formatter
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from knowledge.embeddings import Embedder, Vectors
from policies.base import Strict
from policies.verdicts import Action, Finding

OnUnsupported = Literal["regenerate", "drop", "refer"]
# Measured with the real MiniLM against the demo help center's articles (tests/integration/
# policies/test_grounding_minilm.py): 41 faithful paraphrases, loose ones included, scored
# 0.53 to 0.98; sentences about things the articles never mention (drones, free coffee, a
# styling session) 0.14 to 0.43, but plausible claims about the same subject ("store credit
# expires after a while") 0.46 to 0.78: similarity only backs up the exact agreement of
# numbers and names, which is the sharp signal.
DEFAULT_MIN_SIMILARITY = 0.45


class GroundingRules(Strict):
    """The `grounding` section of the policy file: what happens to unsupported answers."""

    enabled: bool = True
    # Cosine similarity (0-1) to the closest passage sentence below which a sentence is
    # about something the passages do not say.
    min_similarity: float = Field(DEFAULT_MIN_SIMILARITY, ge=0.0, le=1.0)
    # Also require capitalized names (brands, places, days, product names) to be in them.
    check_names: bool = True
    on_unsupported: OnUnsupported = "regenerate"
    # The reply with `on_unsupported: refer`; {articles} becomes the relevant articles.
    refer_reply: str = (
        "I couldn't confirm every detail of my answer in our help articles, so here are the "
        "ones about your question: {articles}. Would you like to talk to a person?"
    )

    @field_validator("refer_reply", mode="after")
    @classmethod
    def _placeholders(cls, reply: str) -> str:
        try:
            names = {name for _, name, _, _ in Formatter().parse(reply) if name is not None}
        except ValueError as exc:
            raise ValueError(f"refer_reply: {exc}; write a literal brace as {{{{ or }}}}") from exc
        if names - {"articles"}:
            raise ValueError("refer_reply may only use the placeholder {articles}")
        if not reply.strip():
            raise ValueError("refer_reply must not be empty")
        return reply


# How each on_unsupported setting shows in the audit (`Finding.action`).
ACTION_OF: dict[OnUnsupported, Action] = {
    "regenerate": "rewrite",
    "drop": "rewrite",
    "refer": "block",
}


@dataclass(frozen=True, slots=True)
class SentenceCheck:
    """The verdict on one sentence. `missing` names its claims found in no passage (never
    shown to users: it is for logs in tests and the regeneration prompt); `reason` is
    "grounded", "no_content" (supported unchecked; `similarity` is then 0),
    "unsupported_number", "unsupported_name" or "low_similarity". `raw` is the sentence as
    it appeared, with the whitespace after it: joining every check's `raw` gives the answer
    back, joining only the supported ones gives the answer with the others dropped."""

    text: str
    supported: bool
    similarity: float
    missing: tuple[str, ...]
    reason: str
    raw: str = ""


# --- sentences -------------------------------------------------------------------------

# A sentence ends at . ! ? (and closing quotes, brackets, markdown emphasis) before whitespace,
# or at a line break; the cut goes where the next sentence starts, so it is only made once
# that character has arrived (a stream never sees "$14." as the end of a sentence).
_END = re.compile(r"[.!?…]+[\"'”’)\]*_]*(?=\s)|\n")
_ABBREVIATION = re.compile(r"(?:\b(?i:mr|mrs|ms|mx|dr|prof|sr|jr|st|vs|approx)|\b[^\W\d_])\.$")
_LIST_MARKER = re.compile(r"(?:^|\n)[ \t]*\d{1,3}\.$")


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence with its trailing whitespace, covering `text`."""
    start = 0
    for match in _END.finditer(text):
        nxt = match.end()
        while nxt < len(text) and text[nxt].isspace():
            nxt += 1
        if nxt >= len(text) or not text[start : match.start() + 1].strip():
            continue
        head = text[: match.start() + 1]
        if match.group().startswith(".") and (
            _ABBREVIATION.search(head) or _LIST_MARKER.search(head) or text[nxt].islower()
        ):
            continue
        yield start, nxt
        start = nxt
    if start < len(text):
        yield start, len(text)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped; every line (a markdown bullet) is one at least."""
    return [text[a:b].strip() for a, b in _spans(text) if text[a:b].strip()]


# --- claims ----------------------------------------------------------------------------

_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90}
_WORD_NUMBER = rf"(?:(?:{'|'.join(_TENS)})(?:[- ](?:{'|'.join(_WORDS[1:10])}))?|{'|'.join(_WORDS)})"
_NUM = rf"(?:\d+(?:,\d{{3}})*(?:\.\d+)?|{_WORD_NUMBER})"
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"  # noqa: E501

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
# A list's ordinal ("2. Select Return item.") is not a numeric claim: it goes with the noise.
_NOISE = re.compile(
    r"\[\d+\]|<[A-Z_]+(?:[:_][\w]+)?>|\[link removed\]|[*_`#]+|^\s*(?:[-+•>]|\d{1,3}[.)])\s+",
    re.MULTILINE,
)
_ID = re.compile(
    r"\b(?=[A-Z0-9-]*\d{3})(?=[A-Z0-9-]*[A-Z])[A-Z0-9]+(?:-[A-Z0-9]+)+\b|\b[A-Z]+\d{3,}\b"
)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_US_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b")
_MONTH_DAY = re.compile(
    rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?", re.IGNORECASE
)
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\b\.?(?:,?\s+(\d{{4}}))?",
    re.IGNORECASE,
)
_TIME = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*([ap])\.?m\b\.?|\b(\d{1,2}):(\d{2})\b", re.I)
_PRICE = re.compile(
    rf"([$€£])\s?(\d+(?:,\d{{3}})*(?:\.\d+)?)|\b(?:usd|eur|gbp)\s?(\d+(?:,\d{{3}})*(?:\.\d+)?)"
    rf"|\b({_NUM})\s?(dollars?|usd|euros?|eur|pounds?|gbp)\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(rf"\b({_NUM})\s?(?:%|percent\b|per cent\b)", re.IGNORECASE)
_DURATION = re.compile(
    rf"\b(?:between\s+({_NUM})\s+and\s+|({_NUM})\s*(?:-|–|to)\s*)?({_NUM})[\s-]*"
    r"(?:(?:business|working|calendar|full)[\s-]+)?(minute|hour|day|week|month|year)s?\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_CURRENCY = {"$": "$", "€": "€", "£": "£", "usd": "$", "dollar": "$", "eur": "€", "euro": "€"}
_CURRENCY |= {"gbp": "£", "pound": "£"}

Kind = Literal["number", "name"]


def _number(text: str) -> str:
    """A number as digits, normalized: "1,000" -> "1000", "5.00" -> "5", "thirty" -> "30"."""
    word = text.lower().replace(" ", "-")
    if word in _WORDS:
        return str(_WORDS.index(word))
    tens, _, unit = word.partition("-")
    if tens in _TENS:
        return str(_TENS[tens] + (_WORDS.index(unit) if unit in _WORDS else 0))
    try:
        value = Decimal(text.replace(",", "")).normalize()
    except InvalidOperation:
        return text
    return format(value, "f")


def _blank(text: str, match: re.Match[str]) -> str:
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def _month_day(month: str, day: str, year: str | None) -> str:
    number = next(i for i, name in enumerate(_MONTHS, 1) if name.startswith(month.lower()[:3]))
    if year:
        return f"{int(year):04d}-{number:02d}-{int(day):02d}"
    return f"{_MONTHS[number - 1].capitalize()} {int(day)}"


def _typed(text: str) -> tuple[dict[str, Kind], str]:
    """The claims that are numbers of some kind, and `text` with them (and URLs) blanked."""
    found: dict[str, Kind] = {}
    for pattern, key in _PATTERNS:
        for match in list(pattern.finditer(text)):
            if value := key(match):
                found[value] = "number"
            text = _blank(text, match)
    for match in list(_NUMBER.finditer(text)):
        found[_number(match.group())] = "number"
    return found, text


def _duration(match: re.Match[str]) -> str:
    low = match.group(1) or match.group(2)
    high = _number(match.group(3))
    unit = match.group(4).lower()
    if low:
        return f"{_number(low)}-{high} {unit}s"
    return f"{high} {unit}" + ("" if high == "1" else "s")


def _price(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)}{_number(match.group(2))}"
    if match.group(3):
        return f"{_CURRENCY[match.group(0)[:3].lower()]}{_number(match.group(3))}"
    return f"{_CURRENCY[match.group(5).lower().rstrip('s')]}{_number(match.group(4))}"


def _time(match: re.Match[str]) -> str:
    if match.group(4):
        hour, minute = int(match.group(4)), int(match.group(5))
    else:
        hour, minute = int(match.group(1)) % 12, int(match.group(2) or 0)
        hour += 12 if match.group(3).lower() == "p" else 0
    return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else ""


# In this order: each match is blanked before the next pattern runs ("$14.95" is a price,
# not also the bare number 14.95). A key of "" blanks without a claim (URLs).
_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (_EMAIL, lambda m: m.group().lower()),
    (_URL, lambda m: ""),
    (_ID, lambda m: m.group().upper()),
    (_ISO_DATE, lambda m: f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}"),
    (_US_DATE, lambda m: f"{int(m[3]) % 100 + 2000}-{int(m[1]):02d}-{int(m[2]):02d}"),
    (_MONTH_DAY, lambda m: _month_day(m[1], m[2], m[3])),
    (_DAY_MONTH, lambda m: _month_day(m[2], m[1], m[3])),
    (_TIME, _time),
    (_PRICE, _price),
    (_PERCENT, lambda m: f"{_number(m[1])}%"),
    (_DURATION, _duration),
)

# Capitalized words that are not names: sentence openers, pronouns, courtesy words.
_NOT_NAMES = frozenset((
    "i", "i'm", "i'll", "i've", "i'd", "you", "your", "you're", "we", "we're", "we'll", "our",
    "us", "it", "it's", "its", "the", "a", "an", "this", "that", "these", "those", "there",
    "here", "if", "when", "once", "after", "before", "then", "also", "however", "unfortunately",
    "please", "yes", "no", "not", "hi", "hello", "hey", "thanks", "thank", "sorry", "sure",
    "great", "good", "ok", "okay", "note", "and", "or", "but", "for", "to", "in", "on", "at",
    "of", "by", "with", "from", "as", "so", "just", "any", "all", "each", "every", "some",
    "what", "which", "who", "how", "why", "where", "do", "does", "did", "can", "could", "will",
    "would", "should", "may", "might", "is", "are", "was", "were", "be", "been", "happy", "glad",
    "let", "feel", "hope", "is", "there", "tip", "important", "step", "just", "simply", "select",
    "choose", "go", "open", "click", "tap", "enter",
))  # fmt: skip
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’&]*(?:-[A-Za-z0-9]+)*")


def _names(text: str) -> set[str]:
    """Runs of capitalized words; a lone capital at the start of the text is not a name."""
    runs: list[list[tuple[int, str]]] = []
    last_end = -2
    for index, match in enumerate(_WORD.finditer(text)):
        word = re.sub(r"'s$", "", match.group())
        capital = word[0].isupper() and len(word) > 1 and word.lower() not in _NOT_NAMES
        if not capital:
            last_end = -2
            continue
        if runs and text[last_end : match.start()] == " ":
            runs[-1].append((index, word))
        else:
            runs.append([(index, word)])
        last_end = match.end()
    names = set()
    for run in runs:
        first_index, first = run[0]
        marked = any(c.isupper() for c in first[1:])  # PayPal, UPS: a name wherever it is
        if first_index == 0 and len(run) == 1 and not marked:
            continue
        names.add(" ".join(word for _, word in run))
    return names


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", _NOISE.sub(" ", text.replace("’", "'"))).strip()


def _claims(text: str, names: bool = True) -> dict[str, Kind]:
    found, rest = _typed(_clean(text))
    if names:
        found |= dict.fromkeys(_names(rest), "name")
    return found


def claims(text: str) -> set[str]:
    """The facts of `text` in normalized form: "$14.95", "10%", "1-2 days", "30 days",
    "March 3", "2024-05-01", "14:00", "30", "NW-123456", "support@x.example",
    "American Express"."""
    return set(_claims(text))


# --- the checker -----------------------------------------------------------------------

_CHITCHAT = re.compile(
    r"\b(?:hi|hello|hey(?: there)?|good (?:morning|afternoon|evening)|thanks?(?: you)?"
    r"(?: so much)?(?: for (?:reaching out|asking|your (?:patience|question|message)))?"
    r"|you're (?:very )?welcome|(?:i'm |i am |i'd be |we're )?(?:happy|glad) to help"
    r"|(?:i'm |i am )?sorry(?: to hear (?:that|about that))?(?: for the (?:trouble|wait))?"
    r"|i apologi[sz]e(?: for the (?:trouble|inconvenience))?|of course|sure|certainly"
    r"|absolutely|no problem|great question|good question|happy trails|hope (?:this|that) helps"
    r"|let me know if (?:you have|there are) any (?:other |more )?questions"
    r"|let me know if (?:i can help with anything else|you need anything else)"
    r"|i don't know(?: the answer to that)?|i'm not sure|i'd rather not guess"
    r"|(?:i can|i'll|let me) (?:connect|transfer|hand|pass|put) you (?:to|with|over to|through"
    r" to) (?:a person|someone|a member of (?:our|the) (?:support )?team|an agent|a human)"
    r"|(?:our|the) (?:support )?team (?:is|will be) (?:happy|glad) to (?:help|assist)(?: you)?"
    r"|if you need (?:more|further|any other|any more) help|(?:have|wishing you) a (?:great|nice"
    r"|good|lovely) day)\b",
    re.IGNORECASE,
)


def _no_content(text: str) -> bool:
    if text.rstrip(" \"')”’").endswith("?"):
        return True
    rest = _CHITCHAT.sub(" ", text)
    return len(re.findall(r"[A-Za-z]{2,}", rest)) <= 2


class _Grounds:
    """One passage list, prepared: its sentence (and sentence-pair) vectors and its claims."""

    def __init__(self, passages: Sequence[str], embedder: Embedder) -> None:
        chunks: list[str] = []
        for passage in passages:
            sentences = [_clean(s) for s in split_sentences(passage)]
            sentences = [s for s in sentences if s]
            chunks += sentences
            chunks += [f"{a} {b}" for a, b in itertools.pairwise(sentences)]
        self.vectors: Vectors = embedder.embed(chunks) if chunks else np.zeros((0, 1), np.float32)
        self.claims: set[str] = set()
        self.numbers: set[str] = set()
        text = " ".join(_clean(p) for p in passages)
        self.text = f" {text.lower()} "
        self.words = set(re.findall(r"[a-z0-9'&-]+", self.text))
        for passage in passages:
            self.claims |= set(_claims(passage, names=False))
        self.numbers = {_number(m) for m in _NUMBER.findall(text)}
        self.numbers |= {_number(m) for m in re.findall(_WORD_NUMBER, text, re.IGNORECASE)}
        # "1-2 days" also supports "up to 2 days" and "1 day".
        for claim in list(self.claims):
            if match := re.fullmatch(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?) (\w+)s", claim):
                for end in match.group(1, 2):
                    self.claims.add(f"{end} {match[3]}" + ("" if end == "1" else "s"))

    def has(self, claim: str, kind: Kind) -> bool:
        if kind == "name":
            phrase = claim.lower()
            return bool(re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", self.text)) or (
                " " in phrase and all(word in self.words for word in phrase.split())
            )
        if claim in self.claims:
            return True
        # A bare number is supported by the same number anywhere in the passages.
        return bool(re.fullmatch(r"\d+(?:\.\d+)?", claim)) and claim in self.numbers


class GroundingChecker:
    """Judges sentences against passages. Constructing it is cheap; `warm_up` loads the
    embedding model. Thread-safe: prepared passage lists are cached (the last 16)."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
        check_names: bool = True,
    ) -> None:
        self._embedder = embedder
        self.min_similarity = min_similarity
        self.check_names = check_names
        self._cache: OrderedDict[tuple[str, ...], _Grounds] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_rules(cls, rules: GroundingRules, embedder: Embedder) -> GroundingChecker:
        """A checker configured by the policy file's `grounding` section."""
        return cls(embedder, min_similarity=rules.min_similarity, check_names=rules.check_names)

    def warm_up(self) -> None:
        self._embedder.warm_up()

    def _grounds(self, passages: Sequence[str]) -> _Grounds:
        key = tuple(passages)
        with self._lock:
            if (grounds := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                return grounds
        grounds = _Grounds(key, self._embedder)
        with self._lock:
            self._cache[key] = grounds
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        return grounds

    def check(self, sentence: str, passages: Sequence[str]) -> SentenceCheck:
        """The verdict on one sentence (as it appears in the answer) against `passages`."""
        return self._judge([sentence], [sentence], self._grounds(passages))[0]

    def check_answer(self, answer: str, passages: Sequence[str]) -> list[SentenceCheck]:
        """One verdict per sentence of `answer`, in order (see `SentenceCheck.raw`)."""
        raws = [answer[a:b] for a, b in _spans(answer) if answer[a:b].strip()]
        return self.judge(raws, passages)

    def judge(self, raws: Sequence[str], passages: Sequence[str]) -> list[SentenceCheck]:
        """Verdicts on already split sentences (`raws`: with their trailing whitespace)."""
        return self._judge([raw.strip() for raw in raws], raws, self._grounds(passages))

    def _judge(
        self, texts: Sequence[str], raws: Sequence[str], grounds: _Grounds
    ) -> list[SentenceCheck]:
        found = [_claims(text, self.check_names) for text in texts]
        contentful = [i for i, text in enumerate(texts) if found[i] or not _no_content(text)]
        similarity = dict.fromkeys(contentful, 0.0)
        if contentful and len(grounds.vectors):
            vectors = self._embedder.embed([_clean(texts[i]) for i in contentful])
            best = (vectors @ grounds.vectors.T).max(axis=1)
            similarity = {i: float(score) for i, score in zip(contentful, best, strict=True)}
        checks = []
        for i, text in enumerate(texts):
            if i not in similarity:
                checks.append(SentenceCheck(text, True, 0.0, (), "no_content", raws[i]))
                continue
            missing = {c: k for c, k in found[i].items() if not grounds.has(c, k)}
            reason = (
                "unsupported_number"
                if "number" in missing.values()
                else "unsupported_name"
                if missing
                else "low_similarity"
                if similarity[i] < self.min_similarity
                else "grounded"
            )
            supported = reason == "grounded"
            score = round(similarity[i], 4)
            checks.append(SentenceCheck(text, supported, score, tuple(missing), reason, raws[i]))
        return checks


class StreamingGrounding:
    """Feed streamed pieces; get a SentenceCheck for each sentence as soon as it is complete
    (numbers split across pieces like "$1" + "4.95" are never judged early); `flush()` at
    the end judges the rest. One instance per answer, driven from one thread."""

    def __init__(self, checker: GroundingChecker, passages: Sequence[str]) -> None:
        self._checker = checker
        self._passages = tuple(passages)
        self._held = ""

    @property
    def held(self) -> str:
        """The text not yet judged (an unfinished sentence)."""
        return self._held

    def feed(self, piece: str) -> list[SentenceCheck]:
        """Add `piece`; verdicts on the sentences it completed (maybe none)."""
        self._held += piece
        spans = list(_spans(self._held))
        if len(spans) < 2:
            return []
        done = spans[-1][0]
        raws, self._held = self._split_off(done)
        return self._checker.judge(raws, self._passages) if raws else []

    def flush(self) -> list[SentenceCheck]:
        """The answer ended: the verdict on what is still held (whitespace alone: none)."""
        raws, self._held = self._split_off(len(self._held))
        return self._checker.judge(raws, self._passages) if raws else []

    def _split_off(self, end: int) -> tuple[list[str], str]:
        head, rest = self._held[:end], self._held[end:]
        return [head[a:b] for a, b in _spans(head) if head[a:b].strip()], rest


# --- audit and benchmark ----------------------------------------------------------------


def findings(checks: Sequence[SentenceCheck], action: Action) -> tuple[Finding, ...]:
    """Audit findings for the unsupported sentences: one per reason, with their count and
    the lowest similarity among them. No text."""
    unsupported = [check for check in checks if not check.supported]
    counts = Counter(check.reason for check in unsupported)
    return tuple(
        Finding(
            "grounding",
            reason,
            action,
            count=count,
            score=round(min(c.similarity for c in unsupported if c.reason == reason), 3),
        )
        for reason, count in sorted(counts.items())
    )


_PLANTED = (
    "This usually takes {n} business days.",
    "There is a handling fee of ${n}.99 for this.",
    "You have {n} days to do this.",
    "Our team replies within {n} hours.",
    "This applies to orders over ${n}.",
)
_DIGITS = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)")


def plant_number(answer: str, passages: Sequence[str], rng: random.Random) -> str:
    """`answer` with one of its numbers changed to a value no passage contains, or, if it has
    none, with a plausible sentence carrying such a number appended (for the benchmark)."""
    present = {_number(m) for p in passages for m in _NUMBER.findall(p)}
    matches = list(_DIGITS.finditer(answer))
    if not matches:
        n = rng.choice([n for n in range(6, 99) if str(n) not in present])
        return f"{answer.rstrip()} {rng.choice(_PLANTED).format(n=n)}"
    match = rng.choice(matches)
    whole, dot, fraction = match.group().partition(".")
    value = int(whole)
    steps = [1, 2, 3, 5, 7, 10, 20, value or 1, 2 * value + 1]
    rng.shuffle(steps)
    for step in steps:
        for candidate in (value + step, value - step):
            new = f"{candidate}{dot}{fraction}"
            if candidate > 0 and new != match.group() and _number(new) not in present:
                return answer[: match.start()] + new + answer[match.end() :]
    new = f"{value * 10 + 7}{dot}{fraction}"  # pragma: no cover - every step was taken
    return answer[: match.start()] + new + answer[match.end() :]
