"""Answers graded the way a support manager does, on the demo help center (Northwind).

    .venv/bin/python bench/support_answers.py [--data bench/data/northwind_answers.yaml]
        [--config NAME=section.key=value,section.key=value ...] [--actions FILE]
        [--limit N] [--only answerable,unanswerable,conversations]
        [--save FILE.jsonl] [--load FILE.jsonl]

demo/kb is indexed with MiniLM into a temporary folder and the real pipeline runs in-process
with the demo's settings, as `make demo` serves it (demo/policy.yaml, documents demo/kb, the
abstention model demo/abstain.json, company "Northwind Outfitters"), conversations in Redis
DB 14 (flushed before each configuration; `--redis`), everything else at the product
defaults, whatever SWITCHBOARD_* variables are set. `--config` adds a configuration, run side
by side with the others: overrides of the settings as nested keys (`answers.mode=quote`,
`llm.max_new_tokens=120`, `sessions.rewrite_followups=concat`; values read as YAML); without
one, a single configuration "default". `--actions` runs every configuration with an actions
file (intent matching on). Each configuration builds, starts and closes its own components.

The question set (the data file) has answerable questions with the facts a correct answer
must state (each fact: alternative regexes) and the false statements to watch for,
questions the help center does not answer, and conversations whose turns keep one
conversation id (follow-ups). Every turn goes through the widget's channel ("web").

How a turn is graded (pure functions below, no model needed):

- the answer is split into sentences and list items; the bot's fixed texts (the policy's
  no_answer, handoff, fallback and blocked messages), "I don't know" and "talk to a person"
  sentences and pure courtesy ("Hope this helps!") are not claims;
- a claim is false when it matches one of the turn's `wrong` regexes; or states a number
  (a price, a percentage, a time, a range: "1-2" and "1 to 2" alike) that the help center
  does not contain (nor the customer's own messages); or, when a gold fact with a figure is
  missing, gives another figure of the same unit ("5 business days" for a 30-day window)
  unless a help-center sentence states that figure in nearly the same words; or is
  unsupported: fewer than half of its content words (stop words out, simple stemming)
  occur in the best-matching article (the customer's own words count as support); or
  shows a placeholder such as <PERSON>;
- declined: a fixed reply (no_answer, blocked, fallback), an empty answer, a handoff, or a
  sentence saying it does not know / cannot find it, or only an offer of a person, when no
  gold fact was stated;
- answerable: correct (every fact, no false claim), partly (some facts, no false claim),
  wrong (a false claim), unhelpful (no fact, no false claim, not declined), declined;
- unanswerable: declined (or handed off; a "don't know" with a false claim beside it is not)
  or answered, which counts as a false claim;
- citation precision: of the articles an answer cites, the share holding one of its
  matched facts or supporting one of its sentences, averaged over answers that cite;
- conversations: each turn like an answerable question (a turn without facts like an
  unanswerable one); first turns, follow-ups, and conversations correct throughout;
- answers that say one sentence twice or more (degenerate output) are counted and shown.

False claims are counted over every turn of every section: per answer not declined, and per
answer. The model is the product's default, from its usual cache (~/.cache/switchboard).

Printed per configuration, side by side, with the targets; then the verbatim worst answers
and the rule that fired. Turn time is from sending the message to the final answer.
`--save` keeps every turn; `--load` grades a saved run again and prints it without the model.
Figures, not a pass/fail test.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import asyncio
import copy
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import yaml

from bench.turn_latency import pct

DATA = ROOT / "bench" / "data" / "northwind_answers.yaml"
KB = ROOT / "demo" / "kb"
SECTIONS = ("answerable", "unanswerable", "conversations")
CHANNEL = "web"  # the demo's chat widget
FIXED_KINDS = {"no_answer", "blocked", "fallback", "error", "to_agent"}

# --- text ---------------------------------------------------------------------------------

# The bot saying it does not know: in the first person, or about the help center, so that a
# quoted "...or it says delivered but you can't find the parcel" is not one.
DONT_KNOW = re.compile(
    r"\bI (?:really )?(?:don't|do not) (?:know|have (?:any |that |this |enough |more )?"
    r"(?:information|details))|"
    r"\bI(?:'m| am) (?:not sure|unable to|not able to)|"
    r"\b(?:I|we) (?:can't|cannot|couldn't|could not|wasn't able to|was unable to) "
    r"(?:find|confirm|answer|help with that|see any)|"
    r"\bno information (?:about|on|regarding)|\bnot covered\b|\brather not guess\b|"
    r"\b(?:help cent(?:er|re)|articles?|knowledge base|documentation|information provided|"
    r"context)\b[^.]{0,40}\b(?:does not|doesn't|do not|don't) (?:contain|say|mention|cover)",
    re.IGNORECASE,
)
OFFER = re.compile(
    r"\b(connect you (?:with|to)|talk to a (?:person|human)|speak (?:to|with) (?:a|an) "
    r"(?:person|human|agent)|human agent|someone from our team|asked a person to join)",
    re.IGNORECASE,
)
# <EMAIL_ADDRESS>, and the hash and pseudonym forms <EMAIL_ADDRESS:3f9a..>, <PERSON_3f9a0c>
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)(?:[:_][0-9a-f]{6,})?>")
LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+")
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9<$])")
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# A number: digits with decimals, thousands or a time's colon; "1st" and "16-digit"'s
# neighbours are handled by the callers.
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*(?![\w])")
RANGE = re.compile(
    r"(?<![\w.])\$?(\d+(?:[.,]\d+)*)\s*(?:-|–|—|to|and)\s*\$?(\d+(?:[.,]\d+)*)(?![\w])"
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP_WORDS = _words(
    """a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't do
    does doesn't doing don't down during each either etc few for from further had hadn't has
    hasn't have haven't having he her here hers herself him himself his how however i i'd
    i'll i'm i've if in into is isn't it it's its itself just let's may me might more most
    much must mustn't my myself need no nor not now of off on once one only or other ought our
    ours ourselves out over own per same shall shan't she should shouldn't so some such than
    that that's the their theirs them themselves then there there's these they they'd they'll
    they're they've this those through thus to too under until up upon us very via was wasn't
    we we'd we'll we're we've were weren't what what's when when's where where's whether which
    while who who's whom why why's will with within without won't would wouldn't yes yet you
    you'd you'll you're you've your yours yourself yourselves"""
)
# Words of courtesy: a sentence of only these (and stop words) is not a claim.
COURTESY = _words(
    """absolutely additional anything apologies apologize appreciate ask assist assistance
    best certainly concern concerns contact course day days else enjoy feel free glad great
    happy hear hello help helpful helps hesitate hey hi hope info information inconvenience
    kind know let like nice okay ok please pleasure question questions reach regards sorry
    support sure team thank thanks today understand welcome wonderful"""
)
# "day(s)" is a courtesy word ("have a nice day") but a fact in "30 days": a sentence with a
# number keeps it.
NUMBER_WORDS = frozenset({"day", "days"})


def strip_markdown(text: str) -> str:
    """Text without markdown emphasis, links (their text kept), code marks and headings."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])[*_]([^*_\n]+)[*_](?![\w*])", r"\1", text)
    text = text.replace("`", "")
    return re.sub(r"(?m)^\s{0,3}#{1,6}\s*", "", text)


def sentences(text: str) -> list[str]:
    """The answer's sentences and list items, markdown stripped (a list's "1." dropped)."""
    out = []
    for line in strip_markdown(text).splitlines():
        line = LIST_MARKER.sub("", line).strip()
        out += [s.strip() for s in SENTENCE_END.split(line) if s.strip()]
    return out


def normal(sentence: str) -> str:
    return " ".join(WORD.findall(sentence.lower()))


def stem(word: str) -> str:
    """Simple stemming: one of -ing, -ed, -es, -s off, then a final -e, then a doubled final
    consonant ("shipping", "shipped", "ships" and "ship" are all "ship")."""
    word = word.replace("'", "")
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                continue
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """Stemmed words that carry content: stop words and courtesy out (digits kept)."""
    words = WORD.findall(strip_markdown(text).lower())
    has_number = any(w.isdigit() for w in words)
    keep = []
    for w in words:
        if w in STOP_WORDS or (len(w) < 2 and not w.isdigit()):
            continue
        if w in COURTESY and not (has_number and w in NUMBER_WORDS):
            continue
        keep.append(stem(w))
    return keep


def _number(raw: str) -> str:
    """'5.95' and '$5.95', '1,000' and '1000', '2:00' and '2', '0100' and '100' alike."""
    raw = raw.replace("$", "")
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", raw):
        raw = raw.replace(",", "")
    raw = re.sub(r"[.:]00$", "", raw)
    raw = raw.lstrip("0") or "0"
    return raw


def _spaced_times(text: str) -> str:
    return re.sub(r"(\d)\s*([ap])\.?m\.?\b", r"\1 \2m", text, flags=re.IGNORECASE)


def numbers(text: str) -> set[str]:
    """The numbers `text` states: placeholders and ordinals ("1st") are not numbers."""
    text = _spaced_times(PLACEHOLDER.sub(" ", strip_markdown(text)))
    return {_number(m.group()) for m in NUMBER.finditer(text)}


def ranges(text: str) -> set[tuple[str, str]]:
    """Ranges "1-2", "1 to 2", "between 1 and 2", "$25 to $500" as (low, high); a phone
    number's "555-0100" (not ascending) is not one."""
    text = _spaced_times(PLACEHOLDER.sub(" ", strip_markdown(text)))
    out = set()
    for m in RANGE.finditer(text):
        low, high = _number(m.group(1)), _number(m.group(2))
        joined = m.group(0)
        if re.search(r"\band\b", joined) and not re.search(
            r"\bbetween\s*\$?$", text[: m.start()][-12:]
        ):
            continue  # "and" only in "between X and Y"
        try:
            if float(low.replace(",", "").replace(":", ".")) < float(
                high.replace(",", "").replace(":", ".")
            ) and not m.group(2).startswith("0"):
                out.add((low, high))
        except ValueError:
            continue
    return out


# What a number counts: money, a percentage, or a unit of time ("3-5 business days": day).
TIME_UNITS = {"minute", "hour", "day", "week", "month", "year", "pm", "am"}
FILLER = {"business", "working", "calendar", "full", "whole", "more", "extra", "or", "and"}
RANGE_REST = re.compile(r"\s*(?:-|–|—|to|or|and)\s*\$?\d+(?:[.,:]\d+)*")


def number_units(text: str) -> set[tuple[str, str]]:
    """The numbers `text` states with what they count: ("5.95", "$"), ("30", "day"), ("2",
    "pm"); numbers of nothing recognisable are left out."""
    text = _spaced_times(PLACEHOLDER.sub(" ", strip_markdown(text)))
    out = set()
    for m in NUMBER.finditer(text):
        before, after = text[: m.start()].rstrip(), text[m.end() :]
        if before.endswith("$"):
            out.add((_number(m.group()), "$"))
            continue
        if rest := RANGE_REST.match(after):
            after = after[rest.end() :]
        if re.match(r"\s*(?:%|percent\b)", after):
            out.add((_number(m.group()), "%"))
            continue
        for word in WORD.findall(after.lower())[:3]:
            if word in FILLER:
                continue
            unit = stem(word) if word not in ("pm", "am") else word
            unit = {"minut": "minute", "hour": "hour", "dai": "day", "weekday": "day"}.get(
                unit, unit
            )
            if unit in TIME_UNITS:
                out.add((_number(m.group()), unit))
            break
    return out


@dataclass(frozen=True)
class HelpCenter:
    """The help center's articles as the grader sees them: text, words, numbers, ranges."""

    texts: dict[str, str]  # file stem -> text, markdown stripped
    vocab: dict[str, frozenset[str]] = field(init=False)
    all_numbers: frozenset[str] = field(init=False)
    all_ranges: frozenset[tuple[str, str]] = field(init=False)
    statements: list[tuple[str, frozenset[str], frozenset[tuple[str, str]]]] = field(
        init=False
    )  # every sentence of every article: (article, its content words, its numbers' units)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "statements",
            [
                # The sentence before is read with it: "It is free on orders over $50" is
                # about the Standard shipping of the sentence before.
                (a, frozenset(content_words(f"{before} {s}")), frozenset(number_units(s)))
                for a, t in self.texts.items()
                for before, s in zip(["", *sentences(t)], sentences(t), strict=False)
            ],
        )
        vocab = {stem_: frozenset(content_words(t)) for stem_, t in self.texts.items()}
        object.__setattr__(self, "vocab", vocab)
        object.__setattr__(
            self, "all_numbers", frozenset(n for t in self.texts.values() for n in numbers(t))
        )
        object.__setattr__(
            self, "all_ranges", frozenset(r for t in self.texts.values() for r in ranges(t))
        )

    @classmethod
    def from_dir(cls, path: Path) -> HelpCenter:
        return cls(
            {
                p.stem: strip_markdown(p.read_text(encoding="utf-8"))
                for p in sorted(path.glob("*.md"))
            }
        )

    def support(self, words: list[str], article: str, extra: Iterable[str] = ()) -> float:
        """The share of `words` (content words) in `article` (or in `extra`)."""
        if not words:
            return 1.0
        known = self.vocab.get(article, frozenset()) | set(extra)
        return sum(w in known for w in words) / len(words)

    def fact_units(self, alternatives: list[str], articles: list[str]) -> set[tuple[str, str]]:
        """The numbers (with units) a fact states where the help center says it: in the
        fact's articles, else anywhere."""
        out: set[tuple[str, str]] = set()
        for where in (articles, list(self.texts)):
            for article in where:
                text = self.texts.get(article, "")
                for pattern in alternatives:
                    for m in re.finditer(pattern, text, re.I):
                        said = numbers(m.group())
                        window = text[max(0, m.start() - 2) : m.end() + 40]
                        out |= {(n, u) for n, u in number_units(window) if n in said}
            if out:
                break
        return out

    def restates(self, words: list[str], figure: tuple[str, str]) -> bool:
        """Whether a sentence of the help center (with the one before it) states `figure`
        with at least 75% of `words`, digits aside: a faithful restatement of a true figure
        ("Standard shipping costs $14.95" is not one: the $14.95 sentence is Express's)."""
        words = [w for w in words if not w.isdigit()]
        needed = 0.75 * len(words)
        return any(
            figure in units and sum(w in known for w in words) >= needed
            for _, known, units in self.statements
        )

    def best_article(self, words: list[str], extra: Iterable[str] = ()) -> tuple[str, float]:
        extra = set(extra)
        return max(
            ((a, self.support(words, a, extra)) for a in self.texts),
            key=lambda pair: pair[1],
            default=("", 0.0),
        )


@cache
def default_help_center() -> HelpCenter:
    return HelpCenter.from_dir(KB)


# --- grading ------------------------------------------------------------------------------

SUPPORT_NEEDED = 0.5


@dataclass
class Gold:
    """What one turn should say: facts (each a list of alternative regexes), wrong regexes;
    `answerable` False: the help center does not answer it."""

    answerable: bool = True
    facts: list[list[str]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    articles: list[str] = field(default_factory=list)


@dataclass
class Grade:
    grade: str  # correct partly wrong unhelpful declined | declined answered (unanswerable)
    declined: bool
    false_claim: bool
    fired: list[str] = field(default_factory=list)
    facts_matched: list[int] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)
    citation_precision: float | None = None  # None: not an answer that cites
    repeats: bool = False  # a sentence said twice or more (degenerate output)


def fact_found(alternatives: list[str], text: str) -> bool:
    plain = strip_markdown(text)
    return any(re.search(p, text, re.I) or re.search(p, plain, re.I) for p in alternatives)


def split_claims(answer: str, fixed: Iterable[str]) -> tuple[list[str], bool, bool]:
    """The answer's claim sentences, whether a sentence says it does not know, and whether
    one offers a person. Fixed texts and courtesy are neither."""
    fixed_sentences = {normal(s) for text in fixed for s in sentences(text)}
    claims, dont_know, offer = [], False, False
    for sentence in sentences(answer):
        if normal(sentence) in fixed_sentences:
            if DONT_KNOW.search(sentence):
                dont_know = True
            continue
        if DONT_KNOW.search(sentence):
            dont_know = True
        elif OFFER.search(sentence):
            offer = True
        elif content_words(PLACEHOLDER.sub(" ", sentence)) or PLACEHOLDER.search(sentence):
            claims.append(sentence)
    return claims, dont_know, offer


def claim_faults(
    sentence: str,
    gold: Gold,
    kb: HelpCenter,
    said_by_customer: str = "",
    missing: Iterable[set[tuple[str, str]]] = (),
) -> list[str]:
    """Why `sentence` is a false claim (empty: it is not one). `missing`: the figures (with
    units) of the gold facts the answer did not state: the sentence giving another figure of
    the same unit, not as the help center says it, is a wrong figure ("5 business days" for
    a 30-day return window)."""
    faults = []
    for pattern in gold.wrong:
        if re.search(pattern, sentence, re.I) or re.search(pattern, strip_markdown(sentence), re.I):
            faults.append(f"wrong /{pattern}/")
    if m := PLACEHOLDER.search(sentence):
        faults.append(f"placeholder {m.group()}")
    allowed = numbers(said_by_customer)
    unknown = sorted(numbers(sentence) - kb.all_numbers - allowed)
    if unknown:
        faults.append(f"number {', '.join(unknown)} not in the help center")
    bad_ranges = sorted(
        r
        for r in ranges(sentence) - kb.all_ranges
        if not (set(r) <= allowed) and set(r) <= kb.all_numbers | allowed
    )
    if bad_ranges:
        faults.append(f"range {', '.join('-'.join(r) for r in bad_ranges)} not in the help center")
    words = content_words(PLACEHOLDER.sub(" ", sentence))
    stated = number_units(sentence)
    for figures_ in missing:
        wanted = {n for n, _ in figures_}
        for n, unit in sorted(stated):
            if n in wanted or n in allowed or unit not in {u for _, u in figures_}:
                continue
            if not kb.restates(words, (n, unit)):
                gold_figure = " or ".join(sorted(f"{m} {u}" for m, u in figures_ if u == unit))
                faults.append(f"wrong figure {n} {unit} (the help center: {gold_figure})")
    article, share = kb.best_article(words, content_words(said_by_customer))
    if words and share < SUPPORT_NEEDED:
        faults.append(f"unsupported ({share:.0%} of its words in {article or 'any article'})")
    return faults


def source_stem(source: str) -> str:
    """A citation's source (a path or a URL) as a file stem: 'returns-policy'."""
    source = re.split(r"[?#]", source)[0].rstrip("/")
    return Path(source).stem


def citation_precision(
    cited: list[str], claims: list[str], facts: list[list[str]], kb: HelpCenter
) -> float | None:
    """The share of the cited articles holding a matched fact or supporting a claim."""
    stems = list(dict.fromkeys(source_stem(c) for c in cited))
    if not stems:
        return None
    precise = 0
    for article in stems:
        text = kb.texts.get(article, "")
        if any(fact_found(alternatives, text) for alternatives in facts) or any(
            kb.support(content_words(PLACEHOLDER.sub(" ", s)), article) >= SUPPORT_NEEDED
            for s in claims
            if content_words(PLACEHOLDER.sub(" ", s))
        ):
            precise += 1
    return precise / len(stems)


def grade_turn(
    answer: str,
    kind: str,
    handoff: str,
    cited: list[str],
    gold: Gold,
    fixed: Iterable[str],
    kb: HelpCenter | None = None,
    said_by_customer: str = "",
) -> Grade:
    """Grade one answer against `gold` (see the module docstring)."""
    kb = kb or default_help_center()
    claims, dont_know, offer = split_claims(answer, fixed)
    matched = [i for i, alternatives in enumerate(gold.facts) if fact_found(alternatives, answer)]
    missing = [
        figures_
        for i, alternatives in enumerate(gold.facts)
        if i not in matched and (figures_ := kb.fact_units(alternatives, gold.articles))
    ]
    fired = []
    for sentence in claims:
        faults = claim_faults(sentence, gold, kb, said_by_customer, missing)
        fired += [f"{fault}: {sentence!r}" for fault in faults]
    false_claim = bool(fired)
    repeated = sorted(
        {normal(c) for c in claims if sum(normal(d) == normal(c) for d in claims) > 1}
    )
    fixed_reply = kind in FIXED_KINDS or not answer.strip()
    said_no = dont_know or (offer and not claims)
    if not gold.answerable:
        declined = fixed_reply or bool(handoff) or (said_no and not false_claim)
        grade = "declined" if declined else "answered"
        if not declined and not fired:
            fired.append("answered a question the help center does not answer")
        result = Grade(grade, declined, not declined, fired, [], claims)
    else:
        # A false claim beside "I don't know" is a wrong answer, not a declined one.
        declined = not false_claim and (fixed_reply or (not matched and (bool(handoff) or said_no)))
        if false_claim:
            grade = "wrong"
        elif matched and len(matched) == len(gold.facts):
            grade = "correct"
        elif matched:
            grade = "partly"
            absent = [f for i, f in enumerate(gold.facts) if i not in matched]
            fired.append(f"missing facts {absent}")
        elif declined:
            grade = "declined"
        else:
            grade = "unhelpful"
            fired.append(f"no fact stated (wanted {gold.facts})")
        result = Grade(grade, declined, false_claim, fired, matched, claims)
    if repeated:
        result.repeats = True
        fired.append(f"repeats itself: {repeated}")
    if not result.declined:
        result.citation_precision = citation_precision(
            cited, claims, [gold.facts[i] for i in result.facts_matched], kb
        )
    return result


# --- the question set ---------------------------------------------------------------------


@dataclass
class Turn:
    """One turn as asked and answered (and graded)."""

    config: str
    section: str
    id: str
    turn: int
    question: str
    gold: dict[str, Any]
    answer: str = ""
    kind: str = ""
    handoff: str = ""
    citations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    fixed: list[str] = field(default_factory=list)  # the bot's fixed texts for this channel
    customer: str = ""  # everything the customer said so far in the conversation
    grade: str = ""
    fired: list[str] = field(default_factory=list)
    result: Grade | None = None


def load_questions(path: Path, limit: int | None, only: set[str]) -> list[list[Turn]]:
    """The question set as conversations (lists of turns); each question is one."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: list[list[Turn]] = []
    for row in (data.get("answerable") or [])[:limit] if "answerable" in only else []:
        gold = Gold(True, row.get("facts") or [], row.get("wrong") or [], row.get("articles") or [])
        out.append([Turn("", "answerable", row["id"], 1, row["question"], asdict(gold))])
    for row in (data.get("unanswerable") or [])[:limit] if "unanswerable" in only else []:
        gold = Gold(False, [], row.get("wrong") or [], row.get("near") or [])
        out.append([Turn("", "unanswerable", row["id"], 1, row["question"], asdict(gold))])
    for row in (data.get("conversations") or [])[:limit] if "conversations" in only else []:
        turns = []
        for n, t in enumerate(row["turns"], 1):
            facts = t.get("facts") or []
            gold = Gold(bool(facts), facts, t.get("wrong") or [], t.get("articles") or [])
            turns.append(Turn("", "conversations", row["id"], n, t["user"], asdict(gold)))
        out.append(turns)
    return out


def regrade(turn: Turn, kb: HelpCenter | None = None) -> Turn:
    turn.result = grade_turn(
        turn.answer, turn.kind, turn.handoff, turn.citations, Gold(**turn.gold), turn.fixed,
        kb, turn.customer,
    )  # fmt: skip
    turn.grade, turn.fired = turn.result.grade, turn.result.fired
    return turn


# --- running ------------------------------------------------------------------------------


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """'NAME=section.key=value,section.key=value' -> (NAME, nested overrides)."""
    name, _, rest = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=section.key=value,...")
    overrides: dict[str, Any] = {}
    for item in re.split(r",(?=[\w.]+=)", rest) if rest else []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{item!r}: write section.key=value")
        node = overrides
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return name, overrides


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def demo_settings(tmp: Path, index: Path, redis_url: str, actions: Path | None) -> dict[str, Any]:
    """The settings of `make demo`, with a temporary data dir (the model cache stays the
    product's default one, so the model is converted once, not per run)."""
    from bot.settings import _default_data_dir

    settings: dict[str, Any] = {
        "data_dir": tmp,
        "redis_url": redis_url,
        "policy_file": ROOT / "demo" / "policy.yaml",
        "company_name": "Northwind Outfitters",
        "llm": {"cache_dir": _default_data_dir() / "models"},
        "knowledge": {
            "index_dir": index,
            "documents_dir": KB,
            "abstention_model": ROOT / "demo" / "abstain.json",
        },
    }
    if actions is not None:
        settings["actions_file"] = actions
    return settings


def isolated_settings(values: dict[str, Any]) -> Any:
    """Settings from `values` alone: no SWITCHBOARD_* variables, no .env."""
    from bot.settings import Settings

    class BenchSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: Any,
            init_settings: Any,
            env_settings: Any,
            dotenv_settings: Any,
            file_secret_settings: Any,
        ) -> tuple[Any, ...]:
            return (init_settings,)

    return BenchSettings(**values)


async def ask(parts: Any, text: str, conversation: str | None) -> dict[str, Any]:
    from bot.errors import SwitchboardError
    from bot.types import Accepted, InboundMessage, Message

    out: dict[str, Any] = {"answer": "", "kind": "to_agent", "handoff": "", "citations": []}
    started = time.perf_counter()
    inbound = InboundMessage(text, CHANNEL, conversation)
    try:
        async with aclosing(parts.manager.respond(inbound)) as events:
            async for event in events:
                if isinstance(event, Accepted):
                    conversation = event.conversation_id
                elif isinstance(event, Message):
                    conversation = event.conversation_id
                    out.update(
                        answer=event.text,
                        kind=event.kind,
                        handoff=event.handoff,
                        citations=[c.source for c in event.citations],
                    )
    except SwitchboardError as exc:
        out.update(answer=f"[{exc.code}: {exc.message}]", kind="error")
    out["seconds"] = time.perf_counter() - started
    out["conversation"] = conversation
    return out


async def run_config(
    name: str, values: dict[str, Any], questions: list[list[Turn]], redis_url: str
) -> list[Turn]:
    import redis

    from bot.components import build_components

    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # DB 14 only (the URL's)
    client.close()
    settings = isolated_settings(values)
    parts = build_components(settings)
    await parts.start()
    fixed_messages = parts.policies.messages(CHANNEL)
    fixed = [fixed_messages.no_answer, fixed_messages.handoff, fixed_messages.fallback,
             fixed_messages.blocked]  # fmt: skip
    done: list[Turn] = []
    total = sum(map(len, questions))
    try:
        for conversation in questions:
            conversation_id: str | None = None
            said: list[str] = []
            for asked in conversation:
                turn = copy.deepcopy(asked)
                turn.config, turn.fixed = name, fixed
                said.append(turn.question)
                turn.customer = "\n".join(said)
                reply = await ask(parts, turn.question, conversation_id)
                conversation_id = reply.pop("conversation")
                for key, value in reply.items():
                    setattr(turn, key, value)
                regrade(turn)
                done.append(turn)
                print(
                    f"  [{name} {len(done)}/{total}] {turn.id}#{turn.turn} {turn.grade:<9} "
                    f"{turn.seconds:5.1f}s {' '.join(turn.answer.split())[:90]!r}",
                    flush=True,
                )
    finally:
        await parts.close()
    return done


async def run(args: argparse.Namespace) -> list[Turn]:
    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.ingest import ingest

    questions = load_questions(args.data, args.limit, args.only)
    configs = args.config or [("default", {})]
    turns: list[Turn] = []
    with tempfile.TemporaryDirectory(prefix="bench-support-") as tmp:
        indexes: dict[tuple[Any, ...], Path] = {}
        embedder: MiniLMEmbedder | None = None
        for name, overrides in configs:
            base = demo_settings(Path(tmp) / name / "data", Path(), args.redis, args.actions)
            values = merge(base, overrides)
            knowledge = isolated_settings(values).knowledge
            key = (knowledge.embedding_model, knowledge.chunk_tokens, knowledge.chunk_overlap)
            if key not in indexes:
                if knowledge.embedding_model != "builtin" or embedder is None:
                    embedder = MiniLMEmbedder(knowledge.embedding_model)
                    embedder.warm_up()
                index = Path(tmp) / f"index-{len(indexes)}"
                report = ingest(KB, index, embedder, progress=False,
                                max_tokens=key[1], overlap=key[2])  # fmt: skip
                print(f"demo help center: {report.documents} documents, {report.chunks} chunks")
                indexes[key] = index
            if "index_dir" not in overrides.get("knowledge", {}):
                values["knowledge"]["index_dir"] = indexes[key]
            print(f"configuration {name}: {overrides or 'the demo defaults'}", flush=True)
            turns += await run_config(name, values, questions, args.redis)
    return turns


# --- figures ------------------------------------------------------------------------------


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def figures(turns: list[Turn]) -> dict[str, Any]:
    """The table's figures for one configuration's graded turns."""
    answerable = [t for t in turns if t.section == "answerable"]
    unanswerable = [t for t in turns if t.section == "unanswerable"]
    dialog = [t for t in turns if t.section == "conversations"]
    graded = [t for t in turns if t.result is not None]
    out: dict[str, Any] = {"answerable n": len(answerable)}
    for grade in ("correct", "partly", "unhelpful", "wrong", "declined"):
        out[f"  {grade} %"] = share(sum(t.grade == grade for t in answerable), len(answerable))
    spoke = [t for t in graded if t.result and not t.result.declined]
    false = [t for t in graded if t.result and t.result.false_claim]
    out["false claims / answers not declined"] = share(len(false), len(spoke))
    out["false claims / all answers"] = share(len(false), len(graded))
    out["answers repeating a sentence %"] = share(
        sum(bool(t.result and t.result.repeats) for t in graded), len(graded)
    )
    out["unanswerable n"] = len(unanswerable)
    out["  declined or handed off %"] = share(
        sum(t.grade == "declined" for t in unanswerable), len(unanswerable)
    )
    ids = list(dict.fromkeys(t.id for t in dialog))
    first = [t for t in dialog if t.turn == 1]
    later = [t for t in dialog if t.turn > 1]

    def ok(t: Turn) -> bool:
        return (
            t.grade in ("correct", "declined")
            if not t.gold["answerable"]
            else (t.grade == "correct")
        )

    out["conversations n (turns)"] = f"{len(ids)} ({len(dialog)})"
    out["  first turns correct %"] = share(sum(map(ok, first)), len(first))
    out["  follow-ups correct %"] = share(sum(map(ok, later)), len(later))
    out["  conversations correct %"] = share(
        sum(all(ok(t) for t in dialog if t.id == i) for i in ids), len(ids)
    )
    precisions = [
        t.result.citation_precision
        for t in graded
        if t.result and t.result.citation_precision is not None
    ]
    out["citation precision"] = statistics.mean(precisions) if precisions else None
    cites = [t for t in spoke if t.citations]
    out["  answers citing >= 3 articles %"] = share(
        sum(len({source_stem(c) for c in t.citations}) >= 3 for t in cites), len(cites)
    )
    times = [t.seconds for t in turns]
    out["turn time p50 s"] = statistics.median(times) if times else None
    out["turn time p95 s"] = pct(times, 0.95) if times else None
    return out


TARGETS: list[tuple[str, str, Callable[[float], bool]]] = [
    ("answerable correct >= 90%", "  correct %", lambda v: v >= 0.9),
    ("false claims <= 2% of all answers", "false claims / all answers", lambda v: v <= 0.02),
    ("wrongly declined <= 8%", "  declined %", lambda v: v <= 0.08),
    ("unanswerable declined >= 90%", "  declined or handed off %", lambda v: v >= 0.9),
    ("follow-ups correct >= 85%", "  follow-ups correct %", lambda v: v >= 0.85),
    ("citation precision >= 0.9", "citation precision", lambda v: v >= 0.9),
    ("p95 <= 8 s", "turn time p95 s", lambda v: v <= 8),
]


def cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    if "%" in key or "false claims" in key:
        return f"{value:.1%}"
    if key.startswith("turn time"):
        return f"{value:.1f}"
    return f"{value:.2f}"


def is_worst(t: Turn) -> bool:
    """Shown verbatim: wrong and unhelpful answers, answered unanswerable questions, and
    answers that repeat themselves."""
    return t.grade in ("wrong", "unhelpful", "answered") or bool(t.result and t.result.repeats)


def print_figures(turns: list[Turn]) -> None:
    names = list(dict.fromkeys(t.config for t in turns))
    table = {n: figures([t for t in turns if t.config == n]) for n in names}
    width = max(12, *(len(n) + 2 for n in names))
    keys = list(next(iter(table.values()))) if table else []
    print(f"\n{'':<38}" + "".join(f"{n:>{width}}" for n in names))
    for key in keys:
        print(f"{key:<38}" + "".join(f"{cell(key, table[n][key]):>{width}}" for n in names))
    print(
        "\ntargets: answerable >= 90% correct, false claims <= 2% of all answers, wrongly "
        "declined <= 8%,\n         unanswerable >= 90% declined, follow-ups >= 85% correct, "
        "citation precision >= 0.9, p95 <= 8 s"
    )
    for n in names:
        verdicts = []
        for label, key, good in TARGETS:
            value = table[n][key]
            verdicts.append(
                f"{label}: {'-' if value is None else 'met' if good(value) else 'MISSED'}"
            )
        print(f"  {n}: " + "; ".join(verdicts))
    for n in names:
        worst = [t for t in turns if t.config == n and is_worst(t)]
        print(f"\nworst answers, {n} ({len(worst)}):")
        for t in worst:
            where = t.id if t.section != "conversations" else f"{t.id} turn {t.turn}"
            print(f"- [{where}] {t.grade}: {t.question}")
            print("    → " + t.answer.strip().replace("\n", "\n      "))
            for rule in t.fired:
                print(f"    ! {rule}")


def save(turns: list[Turn], path: Path) -> None:
    rows = []
    for t in turns:
        row = asdict(t)
        row.pop("result")
        rows.append(row)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def load(path: Path, data: Path | None) -> list[Turn]:
    """A saved run, graded again; with the data file, against its current facts."""
    gold: dict[tuple[str, str, int], dict[str, Any]] = {}
    if data is not None and data.is_file():
        everything = set(SECTIONS)
        for conversation in load_questions(data, None, everything):
            for t in conversation:
                gold[(t.section, t.id, t.turn)] = t.gold
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        row.pop("result", None)
        turn = Turn(**row)
        turn.gold = gold.get((turn.section, turn.id, turn.turn), turn.gold)
        turns.append(regrade(turn))
    return turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the question set (YAML)")
    parser.add_argument(
        "--config", type=parse_config, action="append", metavar="NAME=section.key=value,...",
        help="a configuration: settings overrides (repeatable; default: one, 'default')",
    )  # fmt: skip
    parser.add_argument("--actions", type=Path, help="an actions file: intent matching on")
    parser.add_argument("--limit", type=int, help="the first N of each section")
    parser.add_argument(
        "--only", default=",".join(SECTIONS),
        type=lambda s: {x.strip() for x in s.split(",") if x.strip()},
        help="sections to run: answerable,unanswerable,conversations",
    )  # fmt: skip
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14",
                        help="Redis for the conversations (this DB is flushed)")  # fmt: skip
    parser.add_argument("--save", type=Path, help="write every turn to this JSONL file")
    parser.add_argument("--load", type=Path, help="grade and print a --save file (no model)")
    args = parser.parse_args()
    if unknown := args.only - set(SECTIONS):
        parser.error(f"--only: unknown sections {sorted(unknown)}")
    if args.load:
        turns = load(args.load, args.data)
    else:
        turns = asyncio.run(run(args))
        if args.save:
            save(turns, args.save)
    print_figures(turns)


if __name__ == "__main__":
    main()
