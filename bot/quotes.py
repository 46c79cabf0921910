"""Quote-first answers: the help center's own sentences, chosen for the question.

A small model reverses facts when it rewrites them ("5 business days" for "30 days"); it
cannot when the answer *is* the article's sentence. `units_of` splits the retrieved passages
into quotable units (sentences, list items, and each whole list with its lead-in), with the
markup stripped; `QuoteScorer` scores every unit against the question (MiniLM cosine, the
share of the question's rare words the unit holds, its article's rank); `choose` keeps the
best unit per part of the question, plus what a chosen sentence leans on ("It is free on
orders over $50" needs the sentence before it); `compose` joins them in article order.

Every word of a quote answer is a word of a passage: `compose` only ever joins units, and
`is_quoted` checks it. When no unit scores high enough, the turn declines ("I don't know"),
a second answerability signal beside the retrieval gate.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from bot.types import Citation, Passage
from knowledge.bm25 import tokenize
from knowledge.chunking import CONTEXT_SEPARATOR, HEADING_SEPARATOR
from knowledge.embeddings import Embedder, query_text

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class ArticleSearch(Protocol):
    """A retriever that can return whole articles' sections (`HybridRetriever`)."""

    async def search_articles(
        self, query: str, articles: int, per_article: int, prefer: Sequence[str] = ()
    ) -> tuple[list[Passage], float | None]: ...

    def fix_spelling(self, text: str) -> str: ...


_BULLET = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+")
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+(?:[\"'“‘(\[]?[A-Z0-9$]))")
_ABBREVIATION = re.compile(
    r"(?:\b(?i:mr|mrs|ms|mx|dr|prof|sr|jr|st|vs|approx|e\.g|i\.e|etc)|\b\w)\.$"
)
# Markup a customer must not see as text: emphasis, inline code, images, links, HTML tags.
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((\S+?)(?:\s+\"[^\"]*\")?\)")
_EMPHASIS = re.compile(
    r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1|(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"
)
_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_CODE = re.compile(r"`([^`\n]+)`")
_TAG = re.compile(r"</?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>")
_HEADING_MARK = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_ENTITY = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&nbsp;": " "}
# A sentence that starts like this points back at the one before it.
_LEANS_BACK = re.compile(
    r"^(?:it|its|they|them|their|this|that|these|those|there|he|she|such|both|either|"
    r"also|however|otherwise|instead|then|if so|if not|in that case|in this case|"
    r"to do (?:it|this|that|so)|doing so|after that|before that)\b",
    re.IGNORECASE,
)
# A sentence that asks (or begs) for something, as opposed to one that tells the situation.
_ASKS = re.compile(
    r"^(?:\W*(?:hi|hello|hey|ok|okay|so|and|but|also|please|quick question)\W+)*"
    r"(?:how|what|when|where|which|who|whom|whose|why|can|could|do|does|did|is|are|was|were|"
    r"will|would|should|shall|may|might|have|has|any|tell|explain|list|show|help)\b",
    re.IGNORECASE,
)
# A sentence that only talks about the article itself ("Here is how...", "This article
# covers...") answers nothing, however close its words are to the question.
_ABOUT_ARTICLE = re.compile(
    r"^(?:here is|here's|here are|this (?:article|page|guide|section)|in this (?:article|"
    r"page|guide)|below(?: you)?|read on|the (?:following|sections below))\b",
    re.IGNORECASE,
)


def strip_markup(text: str) -> str:
    """`text` without Markdown/HTML markup: emphasis, code ticks, images and tags dropped,
    a link kept as its text (and its address, when that is a web address)."""
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(lambda m: _link(m[1], m[2]), text)
    text = _EMPHASIS.sub(lambda m: m[2] if m[2] is not None else m[3], text)
    text = _UNDERSCORE.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _HEADING_MARK.sub("", text)
    for entity, char in _ENTITY.items():
        text = text.replace(entity, char)
    return text


def _link(label: str, target: str) -> str:
    if target.startswith(("http://", "https://")) and target not in label:
        return f"{label} ({target})"
    return label


@dataclass(frozen=True, slots=True)
class Unit:
    """A quotable piece of a passage: one sentence, one list item, or a whole list with its
    lead-in (`kind` "list"). `section` numbers the passage it came from, `block` the
    paragraph or list within it, `index` the sentence within that."""

    text: str
    citation: Citation
    heading: str
    article: int  # rank of its article among the passages' articles (0: the best)
    section: int
    block: int
    index: int
    kind: str = "sentence"  # "sentence", "item" or "list"

    @property
    def context(self) -> str:
        """The title and the last heading: what the unit is about when read alone."""
        last = self.heading.split(HEADING_SEPARATOR)[-1] if self.heading else ""
        parts = [self.citation.title] + ([last] if last and last != self.citation.title else [])
        return CONTEXT_SEPARATOR.join(parts)


def passage_body(passage: Passage) -> str:
    """A passage's text without the context line (title and headings) the chunker put first."""
    head, _, body = passage.text.partition("\n\n")
    if body and strip_markup(head).startswith(strip_markup(passage.citation.title)):
        return body
    return passage.text


def split_sentences(text: str) -> list[str]:
    """The sentences of one paragraph (no line breaks inside a sentence are assumed)."""
    text = " ".join(text.split())
    sentences, start = [], 0
    for match in _END.finditer(text):
        head = text[: match.start() + 1]
        if match.group().startswith(".") and _ABBREVIATION.search(head):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def units_of(passages: Sequence[Passage]) -> list[Unit]:
    """Every quotable unit of `passages`, in passage order, each text once (chunks of one
    section overlap)."""
    articles: dict[str, int] = {}
    seen: set[str] = set()
    units: list[Unit] = []
    for section, passage in enumerate(passages):
        article = articles.setdefault(passage.citation.source, len(articles))
        citation = Citation(strip_markup(passage.citation.title).strip(), passage.citation.source)
        blocks = _blocks(strip_markup(passage_body(passage)))
        for block, (kind, pieces) in enumerate(blocks):
            for index, text in enumerate(pieces):
                if text in seen or not re.search(r"\w", text):
                    continue
                seen.add(text)
                unit_kind = "item" if kind == "list" and index > 0 else "sentence"
                units.append(
                    Unit(text, citation, passage.heading, article, section, block, index, unit_kind)
                )
            if kind == "list" and len(pieces) > 2:
                whole = "\n".join(p for p in pieces if p)
                if whole not in seen:
                    seen.add(whole)
                    units.append(
                        Unit(whole, citation, passage.heading, article, section, block, 0, "list")
                    )
    return units


def _blocks(body: str) -> list[tuple[str, list[str]]]:
    """Paragraphs as ("text", sentences) and lists as ("list", [lead-in, "- item", ...]);
    a list's lead-in is the sentence before it that ends with a colon (or "" when none)."""
    blocks: list[tuple[str, list[str]]] = []
    for paragraph in re.split(r"\n[ \t]*\n", body.strip()):
        lines = [line.rstrip() for line in paragraph.splitlines() if line.strip()]
        items = [line for line in lines if _BULLET.match(line)]
        if not items:
            blocks.append(("text", split_sentences(paragraph)))
            continue
        lead: list[str] = []
        prose = [line for line in lines[: lines.index(items[0])]]
        if prose:
            lead = split_sentences(" ".join(prose))
        elif blocks and blocks[-1][0] == "text" and _ends_with_colon(blocks[-1][1]):
            lead = [blocks[-1][1].pop()]  # "You can pay with:", a blank line, then the list
        merged = _merge_items(lines[lines.index(items[0]) :])
        if lead[:-1]:
            blocks.append(("text", lead[:-1]))
        intro = lead[-1] if lead and lead[-1].endswith(":") else ""
        if lead and not intro:
            blocks.append(("text", lead[-1:]))
        blocks.append(("list", [intro, *merged]))
    return blocks


def _ends_with_colon(sentences: list[str]) -> bool:
    return bool(sentences) and sentences[-1].endswith(":")


def _merge_items(lines: list[str]) -> list[str]:
    """List lines as items ("- text"): a line that is not a bullet continues the item above."""
    items: list[str] = []
    for line in lines:
        if _BULLET.match(line) or not items:
            items.append("- " + _BULLET.sub("", line).strip())
        else:
            items[-1] += " " + line.strip()
    return items


@dataclass(frozen=True, slots=True)
class Scored:
    """A unit and how well it answers: `score` combines `similarity` (MiniLM cosine with the
    question), `coverage` (share of the question's weighted words it holds) and its
    article's rank."""

    unit: Unit
    score: float
    similarity: float
    coverage: float


class QuoteScorer:
    """Scores units against a question. The unit vectors are cached (the help center's
    sentences come back turn after turn); thread-safe."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        coverage_weight: float = 0.35,
        article_weight: float = 0.04,
        paragraph_weight: float = 0.5,
        own_weight: float = 0.7,
        lede_penalty: float = 0.05,
        cache_size: int = 4096,
    ) -> None:
        self._embedder = embedder
        self.coverage_weight = coverage_weight
        self.article_weight = article_weight
        self.paragraph_weight = paragraph_weight
        self.own_weight = own_weight
        self.lede_penalty = lede_penalty
        self._vectors: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def score(self, question: str, units: Sequence[Unit], context: str = "") -> list[Scored]:
        """`units` scored for `question`, best first. `context`: the conversation's messages
        the question leans on (a follow-up: "how long is the link good for"); its meaning
        counts `1 - own_weight`, its words half as much as the question's own."""
        if not units:
            return []
        asked = self._embedder.embed([query_text(self._embedder, question)])[0]
        if context:
            around = self._embedder.embed([query_text(self._embedder, context)])[0]
            mixed = self.own_weight * asked + (1 - self.own_weight) * around
            asked = mixed / max(float(np.linalg.norm(mixed)), 1e-9)
        # What would be quoted for a unit (its paragraph) is compared, and the unit itself:
        # a sentence alone ("It is free on orders over $50.") loses what it is about, and a
        # paragraph of conditions dilutes the one sentence that answers.
        blocks = _blocks_of(units)
        quoted = [" ".join(x.text for x in _paragraph(u, blocks)) for u in units]
        paragraph = self._vectors_of(
            [f"{u.context}: {q}" for u, q in zip(units, quoted, strict=True)]
        )
        sentence = self._vectors_of([f"{u.context}: {u.text}" for u in units])
        weight = self.paragraph_weight
        similarity = weight * (paragraph @ asked) + (1 - weight) * (sentence @ asked)
        weights = _term_weights(f"{context} {question}", question if context else "", units)
        sectioned = {u.citation.source for u in units if HEADING_SEPARATOR in u.heading}
        scored = []
        for unit, cosine in zip(units, similarity.tolist(), strict=True):
            coverage = _coverage(weights, unit)
            prior = self.article_weight * (1.0 / (1 + unit.article) - 0.5)
            total = cosine + self.coverage_weight * coverage + prior
            if unit.citation.source in sectioned and HEADING_SEPARATOR not in unit.heading:
                # The lede above an article's first heading sums the article up ("If
                # something isn't right, you can send it back."); its sections answer.
                total -= self.lede_penalty
            if _ABOUT_ARTICLE.match(unit.text):
                total -= 0.5
            scored.append(Scored(unit, total, cosine, coverage))
        scored.sort(key=lambda s: -s.score)
        return scored

    def _vectors_of(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            fresh = self._embedder.embed(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._vectors[text] = vector
                while len(self._vectors) > self._cache_size:
                    self._vectors.popitem(last=False)
        with self._lock:
            rows = [self._vectors.get(t) for t in texts]
        if any(row is None for row in rows):  # evicted meanwhile by a huge request
            return self._embedder.embed(texts)
        return np.stack([row for row in rows if row is not None])


def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _terms(text: str) -> set[str]:
    return {_stem(word) for word in tokenize(text)}


def _term_weights(question: str, focus: str, units: Sequence[Unit]) -> dict[str, float]:
    """The question's words, weighted by rarity among the units (a word every unit has
    tells nothing), the customer's own words of a follow-up (`focus`) twice."""
    terms = _terms(question)
    if not terms:
        return {}
    documents = [_terms(f"{_last_heading(u)} {u.text}") for u in units]
    weights = {}
    for term in terms:
        df = sum(term in words for words in documents)
        weights[term] = math.log(1 + len(documents) / (1 + df))
    for term in _terms(focus):
        if term in weights:
            weights[term] *= 2
    return weights


def _last_heading(unit: Unit) -> str:
    return unit.heading.split(HEADING_SEPARATOR)[-1] if unit.heading else ""


def _coverage(weights: dict[str, float], unit: Unit) -> float:
    if not weights:
        return 0.0
    words = _terms(f"{_last_heading(unit)} {unit.text}")
    return sum(w for t, w in weights.items() if t in words) / sum(weights.values())


def question_parts(question: str) -> list[str]:
    """The separate asks of one message, each with the message's statements in front
    ("I live in Toronto. Can you ship to me? What will it cost?" gives two asks, each led by
    "I live in Toronto."); the whole message when it asks one thing or only tells."""
    sentences = split_sentences(question)
    asks = [s for s in sentences if s.rstrip().endswith("?") or _ASKS.match(s)]
    if len(asks) < 2:
        return [question]
    told = " ".join(s for s in sentences if s not in asks)
    return [f"{told} {ask}".strip() for ask in asks]


@dataclass(frozen=True, slots=True)
class Choice:
    """What `choose` picked: the units in reading order and the best score (0 when none)."""

    units: tuple[Unit, ...]
    best: float


def choose(
    ranked_parts: Sequence[Sequence[Scored]],
    all_units: Sequence[Unit],
    *,
    threshold: float,
    margin: float = 0.05,
    max_paragraphs: int = 2,
    max_chars: int = 700,
) -> Choice:
    """For each ask of the message whose best unit scores at least `threshold`: the
    paragraph holding that unit, and the paragraphs of the runners-up within `margin` of it
    (at most `max_paragraphs` per ask). A help center states a fact with its conditions in
    one paragraph; its single best sentence alone misses them about as often as it has them.
    A long paragraph gives only the chosen sentence and its neighbours; a list, all of it.
    Paragraphs past `max_chars` are left out (never the first)."""
    best = 0.0
    blocks = _blocks_of(all_units)
    groups: list[list[Unit]] = []
    for ranked in ranked_parts:
        if not ranked:
            continue
        top = ranked[0]
        best = max(best, top.score)
        if top.score < threshold:
            continue
        keys: list[tuple[int, int]] = []
        for scored in ranked:
            if scored.score < top.score - margin or len(keys) == max_paragraphs:
                break
            key = (scored.unit.section, scored.unit.block)
            if key not in keys:
                keys.append(key)
                groups.append(_paragraph(scored.unit, blocks))
    chosen: list[Unit] = []
    size = 0
    for group in groups:
        fresh = [u for u in group if u not in chosen]
        length = sum(len(u.text) + 1 for u in fresh)
        if chosen and size + length > max_chars:
            continue
        chosen += fresh
        size += length
    return Choice(tuple(sorted(chosen, key=_reading_order)), best)


LONG_PARAGRAPH = 4  # sentences; a longer paragraph is quoted around the chosen sentence


def _blocks_of(units: Sequence[Unit]) -> dict[tuple[int, int], list[Unit]]:
    """The units of each paragraph or list, by (section, block)."""
    blocks: dict[tuple[int, int], list[Unit]] = {}
    for unit in units:
        blocks.setdefault((unit.section, unit.block), []).append(unit)
    return blocks


def _paragraph(unit: Unit, blocks: dict[tuple[int, int], list[Unit]]) -> list[Unit]:
    """What to quote for `unit`: its whole paragraph, its whole list, or (in a long
    paragraph) the sentence with its neighbours. `blocks`: `_blocks_of` the units."""
    members = blocks[(unit.section, unit.block)]
    whole = [u for u in members if u.kind == "list"]
    if whole:
        return whole
    sentences = sorted((u for u in members if u.kind == "sentence"), key=lambda u: u.index)
    if len(sentences) <= LONG_PARAGRAPH or unit.kind != "sentence":
        return _leaned_on(sentences, blocks) + sentences if sentences else [unit]
    around = [u for u in sentences if unit.index - 1 <= u.index <= unit.index + 1]
    if around[0].index == 0 or not _LEANS_BACK.match(around[0].text):
        return around
    return [u for u in sentences if u.index == around[0].index - 1] + around


def _leaned_on(sentences: list[Unit], blocks: dict[tuple[int, int], list[Unit]]) -> list[Unit]:
    """The paragraph before `sentences` (a whole paragraph) when its first sentence points
    back at it: "To do it, go to Account > Orders" needs "Orders can be changed within 1
    hour" before it. Nothing when it does not, or when that paragraph is long or a list."""
    first = sentences[0]
    if first.index != 0 or first.block == 0 or not _LEANS_BACK.match(first.text):
        return []
    before = blocks.get((first.section, first.block - 1), [])
    if any(u.kind != "sentence" for u in before) or len(before) > LONG_PARAGRAPH:
        return []
    return sorted(before, key=lambda u: u.index)


def _reading_order(unit: Unit) -> tuple[int, int, int, int]:
    return (unit.article, unit.section, unit.block, unit.index)


def compose(units: Sequence[Unit]) -> str:
    """The answer's text: units of one paragraph joined by spaces, paragraphs and lists by
    blank lines; the lead-in of a list stays with it."""
    paragraphs: list[list[str]] = []
    last: tuple[int, int] | None = None
    for unit in units:
        key = (unit.section, unit.block)
        text = unit.text.strip()
        if unit.kind == "list" or last != key or unit.kind == "item":
            if unit.kind == "item" and last == key and paragraphs:
                paragraphs[-1].append("\n" + text)
            else:
                paragraphs.append([text])
        else:
            paragraphs[-1].append(" " + text)
        last = key
    return "\n\n".join("".join(p).strip() for p in paragraphs)


def citations_of(units: Sequence[Unit]) -> tuple[Citation, ...]:
    """The articles the chosen units come from, each once, in answer order."""
    return tuple(dict.fromkeys(u.citation for u in units))


def is_quoted(answer: str, passages: Sequence[Passage]) -> bool:
    """Whether every sentence of `answer` is word for word a sentence of `passages`."""
    sources = {" ".join(u.text.split()) for u in units_of(passages)}
    sources |= {line for s in list(sources) for line in s.split("\n")}
    for paragraph in re.split(r"\n\s*\n", answer.strip()):
        for line in paragraph.split("\n"):
            pieces = [line] if _BULLET.match(line) else split_sentences(line)
            if any(" ".join(p.split()) not in sources for p in pieces if p.strip()):
                return False
    return True


class QuoteAnswerer:
    """Chooses the quotes that answer a question: `QuoteScorer` per ask of the message,
    then `choose`. A follow-up's articles (the last answer's) score a little higher.
    (Lowering what was already said lost follow-ups: "do they expire?" asks again for a
    sentence the last answer quoted.)"""

    TOPIC_BONUS = 0.1
    ALONE_MARGIN = 0.1  # below min_score by more than this, alone: not this conversation's

    def __init__(self, embedder: Embedder, *, min_score: float = 0.5, max_chars: int = 700) -> None:
        self.scorer = QuoteScorer(embedder)
        self.min_score = min_score
        self.max_chars = max_chars

    def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        query: str = "",
        topic: Sequence[str] = (),
        leans: bool = True,
    ) -> Choice:
        """The units of `passages` that answer `question` (empty: none does). `query`: the
        question made stand-alone from the conversation, when it differs; `topic`: the
        sources of the articles a follow-up refers to (the last answer's); `leans`: whether
        the message points back at the conversation ("and for express?"): one that does not
        is read with the conversation only when it nearly answers on its own."""
        units = units_of(passages)
        if not units:
            return Choice((), 0.0)
        # A follow-up is scored by its own words first and the conversation's second:
        # "how long does standard take" after a question about cut-off times is answered by
        # its own words; "how long is the link good for" by the conversation's.
        context = query.removesuffix(question).strip() if query and query != question else ""
        parts = question_parts(question)
        if context and not leans:
            # A message that does not point back is read with the conversation only when
            # the help center has something for it on its own: "Can you recommend a
            # lasagna recipe?" after a password question is no follow-up, and its 0.13 must
            # not be lifted into an answer by the password article.
            alone = [self.scorer.score(part, units) for part in parts]
            if max(ranked[0].score for ranked in alone) < self.min_score - self.ALONE_MARGIN:
                return choose(alone, units, threshold=self.min_score, max_chars=self.max_chars)
        ranked_parts = [
            _on_topic(self.scorer.score(part, units, context=context), set(topic), self.TOPIC_BONUS)
            for part in parts
        ]
        return choose(ranked_parts, units, threshold=self.min_score, max_chars=self.max_chars)


def _on_topic(scored: list[Scored], topic: set[str], bonus: float) -> list[Scored]:
    """`scored` with the conversation's articles raised by `bonus`, best first again."""
    if not topic:
        return scored
    raised = [
        Scored(s.unit, s.score + bonus, s.similarity, s.coverage)
        if s.unit.citation.source in topic
        else s
        for s in scored
    ]
    return sorted(raised, key=lambda s: -s.score)


def cite_answer(answer: str, passages: Sequence[Passage]) -> tuple[Citation, ...]:
    """The articles a written answer's sentences come from: for each sentence, the passage
    holding the most of its words (at least half), each article once, in answer order."""
    bodies = [(p, _terms(strip_markup(p.text))) for p in passages]
    cited: dict[str, Citation] = {}
    for sentence in split_sentences(strip_markup(answer)):
        words = _terms(sentence)
        if not words or not bodies:
            continue
        passage, share = max(
            ((p, len(words & terms) / len(words)) for p, terms in bodies), key=lambda x: x[1]
        )
        if share >= 0.5:
            title = strip_markup(passage.citation.title).strip()
            cited.setdefault(passage.citation.source, Citation(title, passage.citation.source))
    return tuple(cited.values())


def is_echo(sentence: str, question: str) -> bool:
    """Whether `sentence` only repeats the customer's question (its words, nothing new)."""
    words = _terms(sentence)
    if not words:
        return False
    asked = _terms(question)
    new = words - asked
    return len(new) <= max(1, len(words) // 5) and len(words & asked) >= 2
