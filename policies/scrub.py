"""The `scrub` stage: a stricter net at the storage point only, after `pii`.

The PII stage has to be precise as well as thorough: what it replaces, the model no longer
sees. Its recall on people's names is about 0.89 (bench/policies.py); the names it misses
are mostly surnames and first names from outside the English-speaking world written alone
("What's your last name? Sjöberg", "our founders: Svensson, Estrada and Scott"). Storage
can afford to be blunter than the prompt: what is written to Redis, transcripts, summaries
and fine-tuning data gets, on top of `pii`,

- every capitalized word that is no English word (Webster's 2nd and GCIDE, in PyPI's
  `english-words`) and not in the knowledge base's vocabulary replaced by `<NAME>`. Words
  are checked part by part ("Jean-Luc", "QueueManager" = "Queue" + "Manager"); acronyms,
  "I" and contractions are left alone. A capitalized word listed with a name is replaced
  too ("<PERSON> and Stone": a surname that is also an English word);
- every run of at least `digits` digits (with spaces, dashes, dots or brackets between:
  "468 3505", "42-51-49-67") replaced by `<NUMBER>`, except dates, times, versions,
  zero-padded log counters and an identifier's ("CVE-2016-1000031").

On bench/policies.py's 400 generated conversations this took the values found in Redis and
the logs from 27 of 310 (the PII stage alone) to 0. The cost is in the transcripts: 2 of 513
real customer utterances lost a word ("Mastercard"), and TechQA forum questions lose product
and class names missing from the 337-article sample knowledge base ("WsnNameService") and
typos ("Portral"). The model still answers the turn from the PII stage's text; later turns
read the stored, scrubbed history.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterator

from pydantic import Field

from bot.errors import ConfigError
from policies.base import Context, Strict
from policies.verdicts import Allow, Finding, Verdict

NAME = "<NAME>"
NUMBER = "<NUMBER>"
INSTALL = "pip install english-words==2.0.2"


class ScrubRules(Strict):
    """Storage only: what else is replaced before anything is stored (see `policies.scrub`)."""

    enabled: bool = True
    # Capitalized words that are neither English words nor in the knowledge base: <NAME>.
    unknown_words: bool = True
    # Runs of at least this many digits: <NUMBER> (0: never).
    digits: int = Field(7, ge=0, le=40)


# A word in running text: letters, inner apostrophes or hyphens. Not part of an address,
# a path or a placeholder ("<PERSON>").
_WORD = re.compile(r"(?<![\w@./\\<-])[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w@/\\>])")
_CONTRACTION = re.compile(r"(?:n['’]t|['’](?:s|ll|ve|re|m|d))$", re.IGNORECASE)
# Abbreviations of months and days, which no word list has.
_ABBREVIATIONS = frozenset(
    " ".join(
        (
            "jan feb mar apr jun jul aug sep sept oct nov dec",
            "mon tue tues wed thu thur thurs fri sat sun",
        )
    ).split()
)
# Digits with one or two spaces, dashes, dots or brackets between ("(555) 010-4477"). Not
# glued to a word ("CWWKF0001E"), not after an identifier's dash ("CVE-2016-1000031"), not
# before a colon (a time); a literal "\n" before counts as a break.
_DIGITS = re.compile(r"(?:(?<=\\[nrt])|(?<!\w))(?<!\w-)[+(]?\d(?:[ \-.()]{0,2}\d)*(?![\w:])")
# Long numbers that are not about a person: dates, versions ("2.1.0.0-1.1-4140": three or
# more single digits), zero-padded counters and hex words in logs ("00000088").
_DATE = re.compile(r"\d{4}[-.]\d\d[-.]\d\d|\d\d?[-.]\d\d?[-.]\d{2}(?:\d\d)?")


# A name tag (the PII stage's, in any operator's form, or this stage's), and a capitalized
# word joined to it by "and", "or" or "&", on either side. Not by a comma alone: "Hi <PERSON>,
# Thanks for..." is common, and a list with a comma ends with "and" ("A, Stone and <NAME>").
_TAG = r"(?P<tag><NAME>|<PERSON[^<>\s]*>)"
_JOIN = r"(?P<join>[ \t]+(?:and|or|&)[ \t]+)"
_CAPITALIZED = r"(?P<word>[A-ZÀ-ÖØ-Þ][^\W\d_]+(?:['’-][^\W\d_]+)*)"
_AFTER_A_NAME = re.compile(rf"{_TAG}{_JOIN}{_CAPITALIZED}(?![\w'’-])")
_BEFORE_A_NAME = re.compile(rf"(?<![\w'’-]){_CAPITALIZED}{_JOIN}{_TAG}")


@functools.cache
def english_words() -> frozenset[str]:
    """Webster's 2nd and GCIDE, lower case (about 263,000 words); loaded once."""
    try:
        from english_words import get_english_words_set  # type: ignore[import-untyped]
    except ImportError as error:
        raise ConfigError(
            f"the scrub stage needs the 'english-words' package: {INSTALL}, "
            "or set scrub.unknown_words: false in the policy file"
        ) from error
    from spacy.lang.en.stop_words import STOP_WORDS

    words = get_english_words_set(["web2", "gcide"], lower=True, alpha=True)
    return frozenset(words) | frozenset(STOP_WORDS) | _ABBREVIATIONS


class ScrubStage:
    """Replaces unknown capitalized words and long numbers in text on its way to storage.

    `vocabulary` returns the knowledge base's words (lower case): a product name that the
    help center uses is not a name. Asked at each check, so a re-ingested knowledge base
    counts at once.
    """

    name = "scrub"

    def __init__(
        self, rules: ScrubRules, vocabulary: Callable[[], Collection[str]] | None = None
    ) -> None:
        self._rules = rules
        self._vocabulary = vocabulary or frozenset

    def warm_up(self) -> None:
        if self._rules.enabled and self._rules.unknown_words:
            english_words()

    def check(self, text: str, context: Context) -> Verdict:
        if not self._rules.enabled:
            return Allow(text)
        findings: list[Finding] = []
        if self._rules.unknown_words:
            known, extra = english_words(), self._vocabulary()
            replaced = 0

            def word(match: re.Match[str]) -> str:
                nonlocal replaced
                if _is_known(match.group(), known, extra):
                    return match.group()
                replaced += 1
                return NAME

            text = _WORD.sub(word, text)
            if replaced:
                findings.append(Finding(self.name, "unknown_word", "redact", "NAME", replaced))
            text, listed = _listed(text)
            if listed:
                findings.append(Finding(self.name, "listed_with_a_name", "redact", "NAME", listed))
        if self._rules.digits:
            runs = [m for m in _DIGITS.finditer(text) if _personal(m.group(), self._rules.digits)]
            for run in reversed(runs):
                text = text[: run.start()] + NUMBER + text[run.end() :]
            if runs:
                findings.append(Finding(self.name, "digits", "redact", "NUMBER", len(runs)))
        return Allow(text, findings=tuple(findings))


def _listed(text: str) -> tuple[str, int]:
    """Capitalized words listed with a name ("<NAME> and Stone", "Stone & <PERSON>") replaced:
    in a list of people, a surname that is also an English word is still a surname."""
    from spacy.lang.en.stop_words import STOP_WORDS

    replaced = 0

    def name(match: re.Match[str]) -> str:
        nonlocal replaced
        word = match.group("word")
        if word.lower() in STOP_WORDS or word.isupper():
            return match.group()
        replaced += 1
        return match.group().replace(word, NAME, 1)

    while True:  # a list: "<NAME>, Stone and Wood"
        before = replaced
        text = _AFTER_A_NAME.sub(name, text)
        text = _BEFORE_A_NAME.sub(name, text)
        if replaced == before:
            return text, replaced


def _is_known(word: str, known: frozenset[str], extra: Collection[str]) -> bool:
    """Lower case, "I", an initial, an acronym ("IBM", "VPs"), or every part a known word."""
    stem = _CONTRACTION.sub("", word)
    if len(stem) < 2 or not stem[0].isupper() or stem.rstrip("s").isupper():
        return True
    whole = stem.lower()
    if whole in extra:  # the knowledge base's "WebSphere" is "websphere"
        return True
    return all(
        part.isupper() or any(form in known or form in extra for form in _forms(part.lower()))
        for part in _parts(stem)
    )


def _forms(word: str) -> Iterator[str]:
    """`word` and the dictionary forms it may be inflected from ("returns" -> "return",
    "shipping" -> "ship", "tried" -> "try"): the word lists hold the plain forms only."""
    yield word
    for suffix, endings in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            for ending in endings:
                yield stem + ending
            if len(stem) > 2 and stem[-1] == stem[-2]:
                yield stem[:-1]  # "shipped" -> "ship"


_SUFFIXES = (
    ("ies", ("y",)),
    ("ied", ("y",)),
    ("es", ("", "e")),
    ("s", ("",)),
    ("ed", ("", "e")),
    ("ing", ("", "e")),
    ("er", ("", "e")),
    ("est", ("", "e")),
    ("ly", ("",)),
)


def _parts(word: str) -> Iterator[str]:
    """The pieces of a word between hyphens and apostrophes, each split where its case
    changes: "QueueManager" -> "Queue", "Manager"; "CAPublisher" -> "CA", "Publisher"."""
    for piece in re.split(r"['’-]", word):
        start = 0
        for i in range(1, len(piece)):
            before, char = piece[i - 1], piece[i]
            after = piece[i + 1] if i + 1 < len(piece) else ""
            if char.isupper() and (before.islower() or (before.isupper() and after.islower())):
                yield piece[start:i]
                start = i
        if piece[start:]:
            yield piece[start:]


def _personal(run: str, digits: int) -> bool:
    """Whether a run of digits may be someone's number (see `_DATE`)."""
    groups = re.findall(r"\d+", run)
    return (
        sum(map(len, groups)) >= digits
        and not run.lstrip("+(").startswith("000")
        and sum(len(group) == 1 for group in groups) < 3
        and not _DATE.fullmatch(run)
    )
