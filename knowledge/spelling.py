"""Customers' typos, corrected against the help center's own words before searching.

"forgot my pasword", "how much is shiping": a misspelt word matches nothing in BM25 and
pulls its sentence's embedding away from the article. `SpellingFixer` replaces a word that
neither the help center nor an English dictionary knows by the help center's word one edit
away (a letter missing, extra, wrong, or two letters swapped), when there is exactly one
such word (or one clearly more common). Lookup is by deletions (SymSpell's idea): every word
and every form of it with one letter deleted, indexed once per vocabulary.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable

_WORD = re.compile(r"[A-Za-z]+")
MIN_LENGTH = 4  # shorter words have too many neighbours one edit away


@functools.cache
def _dictionary() -> frozenset[str]:
    """English words in lower case (Webster's 2nd, from the english-words package); empty
    when the package is missing (then only the help center's words count as known)."""
    try:
        from english_words import get_english_words_set  # type: ignore[import-untyped]
    except ImportError:
        return frozenset()
    return frozenset(get_english_words_set(["web2"], lower=True, alpha=True))


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def one_edit_apart(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by one insertion, deletion, substitution or swap of two
    neighbouring letters (optimal string alignment distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and (a[diff[1]] == b[diff[0]])
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


class SpellingFixer:
    """Corrects words against a vocabulary (the knowledge base's words, lower case) and
    their counts. Built with the index (off the turn's path: the retriever's load), then
    read-only and thread-safe."""

    def __init__(self, vocabulary: Iterable[str], counts: dict[str, int] | None = None) -> None:
        self._words = frozenset(w for w in vocabulary if w.isalpha())
        self._counts = counts or {}
        index: dict[str, list[str]] = defaultdict(list)
        for word in self._words:
            if len(word) >= MIN_LENGTH - 1:
                index[word].append(word)
                for deleted in _deletes(word):
                    index[deleted].append(word)
        self._index = dict(index)
        _dictionary()  # loaded once per process, here rather than in a turn

    def correct(self, word: str) -> str:
        """`word`'s correction (lower case), or `word` itself when it is known or has no
        single clear neighbour."""
        lower = word.lower()
        if len(lower) < MIN_LENGTH or lower in self._words or lower in _dictionary():
            return word
        index = self._index
        candidates = {c for key in {lower} | _deletes(lower) for c in index.get(key, ())}
        near = sorted(c for c in candidates if one_edit_apart(lower, c))
        if not near:
            return word
        if len(near) > 1:
            near.sort(key=lambda c: -self._counts.get(c, 0))
            if self._counts.get(near[0], 0) < 2 * self._counts.get(near[1], 0) + 1:
                return word  # two plausible corrections: leave it
        return near[0]

    def fix(self, text: str) -> str:
        """`text` with each misspelt word corrected (the rest untouched)."""
        return _WORD.sub(lambda m: self.correct(m.group()), text)
