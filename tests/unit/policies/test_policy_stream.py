"""The streaming output filter, driven by PatternRedactor: no leaks, exact, bounded."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest

from policies.pii import Found, PatternRedactor, Redaction, splice
from policies.stream import TAIL_CHARS, StreamingRedactor

REDACTOR = PatternRedactor()


def sized(text: str, size: int) -> Iterator[str]:
    return (text[i : i + size] for i in range(0, len(text), size))


def randomly(text: str, seed: int) -> Iterator[str]:
    rng, i = random.Random(seed), 0
    while i < len(text):
        step = rng.randint(1, 6)
        yield text[i : i + step]
        i += step


def words(text: str) -> list[str]:
    # Roughly how a tokenizer streams: a leading space glued to each word.
    return re.findall(r"\s*\S+|\s+", text)


def chunkings(text: str) -> dict[str, list[str]]:
    return {
        "chars": list(text),
        "pairs": list(sized(text, 2)),
        "sevens": list(sized(text, 7)),
        "words": words(text),
        "random1": list(randomly(text, 1)),
        "random2": list(randomly(text, 2)),
        "whole": [text],
    }


def stream(pieces: list[str], max_hold: int = 400) -> tuple[list[str], str]:
    """(what each feed released, what flush released)."""
    output = StreamingRedactor(REDACTOR, max_hold)
    return [output.feed(piece) for piece in pieces], output.flush()


def test_card_is_held_until_complete_when_split_across_two_tokens() -> None:
    output = StreamingRedactor(REDACTOR, 400)
    assert output.feed("My card is 4111 1111") == ""
    assert output.feed(" 1111 1111. Thanks") == "My card is <CREDIT_CARD>. "
    assert output.flush() == "Thanks"


LEAKS = [
    # (streamed answer, fragments that must never be shown)
    ("My card is 4111 1111 1111 1111. Thanks, that is all.", ["4", "1111"]),
    ("Sure! We'll write to john.doe@example.com. Anything else?", ["john", "example"]),
    ("Call (212) 555-0182 or +44 20 7946 0958\nBye.", ["212", "555", "0182", "44", "7946"]),
    ("Your SSN 536-90-4399 is on file. The IP was 203.0.113.42.", ["536", "4399", "203", "113"]),
    # No sentence end for 80+ characters: the entity arrives while releases are forced.
    (
        "Of course, I can help with that refund today and I will note it in the ticket: "
        "card 4111 1111 1111 1111 and the address you gave me earlier so we can reach you",
        ["4", "1111"],
    ),
    (
        "Of course, I can help with that refund today and I will write to you at the address "
        "ada.lovelace@analytical-engine.example.org which you gave me earlier so we can reach you",
        ["ada", "lovelace", "analytical", "engine"],
    ),
    (
        "Of course, I can help with that refund today and I will call you on the number you "
        "gave, +1 (212) 555 0182, which you gave me earlier so we can reach you",
        ["212", "555", "0182"],
    ),
]


@pytest.mark.parametrize(("text", "fragments"), LEAKS)
def test_never_leaks_pii_when_split_across_tiny_tokens(text: str, fragments: list[str]) -> None:
    # Every hold limit from 80 to 100 shifts where forced releases fall, so some of them
    # land while an entity is only half streamed.
    for max_hold in (*range(80, 101), 400):
        for name, pieces in chunkings(text).items():
            released, tail = stream(pieces, max_hold)
            shown = "".join(released) + tail
            for fragment in fragments:
                assert fragment not in shown, (max_hold, name, fragment, released)


EXACT = [
    "Hello! Your order shipped. It arrives Monday.",
    "Refunds go to card 4111 1111 1111 1111. Questions? Mail help@shop.example.com.\nThanks!",
    "Line one\nline two with 203.0.113.42\n\nline four. Done",
    "Dr. J. Smith (call 212-555-0182) wrote: e.g. 3.5 stars. Really? Yes!",
    "no boundary at all " * 30 + "and a card 4111111111111111 " + "then more words " * 20,
    "",
]


@pytest.mark.parametrize("max_hold", [80, 400])
@pytest.mark.parametrize("text", EXACT)
def test_released_text_equals_full_redaction_when_streamed(text: str, max_hold: int) -> None:
    expected = REDACTOR.redact(text).text
    for name, pieces in chunkings(text).items():
        released, tail = stream(pieces, max_hold)
        assert "".join(released) + tail == expected, name


@pytest.mark.parametrize(
    ("text", "released"),
    [
        ("First sentence. Second", "First sentence. "),
        ("Really?! Yes", "Really?! "),
        ('He said "done." Then', 'He said "done." '),
        ("One line\nnext", "One line\n"),
        ("A. B. C. Two sentences end here. Rest", "A. B. C. Two sentences end here. "),
        # negative rows: a dot that is not followed by whitespace, or after an abbreviation
        ("Mail john.doe@example.com", ""),
        ("Rated 3.5 stars", ""),
        ("See example.com/a.b for more", ""),
        ("Ask Mr. Smith", ""),
        ("ask ms. tomasz", ""),  # customers don't capitalise: the cue stays with the name
        ("Ask J. Smith", ""),
        ("For e.g. this", ""),
        ("Ends with a dot.", ""),
    ],
)
def test_releases_only_at_sentence_end_when_under_hold_limit(text: str, released: str) -> None:
    output = StreamingRedactor(REDACTOR, 400)
    assert output.feed(text) == released
    assert output.flush() == REDACTOR.redact(text[len(released) :]).text


def test_forced_release_keeps_a_tail_when_text_has_no_boundary() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    output = StreamingRedactor(REDACTOR, 100)
    released = []
    for piece in words(text):
        released.append(output.feed(piece))
        assert output.held_chars <= 100 + len(piece)
    assert sum(map(len, released)) > len(text) - 150  # most of it went out before the end
    assert output.held_chars >= TAIL_CHARS
    assert "".join(released) + output.flush() == text


def test_partial_entity_at_the_end_stays_held_when_release_is_forced() -> None:
    output = StreamingRedactor(REDACTOR, 100)
    released = output.feed("filler words " * 10 + "you can mail me at john.doe@exam")
    assert released and "john" not in released
    assert output.feed("ple.com") == ""
    assert output.flush().endswith("mail me at <EMAIL_ADDRESS>")


class PhraseRedactor:
    """Finds fixed phrases (with spaces inside) as PERSON: entities a whitespace cut could split."""

    def __init__(self, *phrases: str) -> None:
        self._pattern = re.compile("|".join(map(re.escape, phrases)))
        self.calls = 0

    def warm_up(self) -> None:
        """Nothing to load."""

    def redact(self, text: str) -> Redaction:
        self.calls += 1
        found = [
            Found("PERSON", m.start(), m.end(), 0.9, "<PERSON>")
            for m in self._pattern.finditer(text)
        ]
        return Redaction(splice(text, found), tuple(found))


def test_forced_cut_avoids_detected_entity_when_whitespace_is_inside_it() -> None:
    name = "Alexandra Maria Josephina van der Berg-Hoffmann"  # longer than the held-back tail
    # The spaces inside the name are the last ones far enough from the end to cut at.
    text = "x" * 60 + " written by " + name + " " + "y" * 35
    output = StreamingRedactor(PhraseRedactor(name), 100)
    released = output.feed(text)
    assert released == "x" * 60 + " written by "  # cut before the name, never inside it
    assert output.flush() == "<PERSON> " + "y" * 35


def test_forced_cut_keeps_digit_groups_together_when_number_is_longer_than_tail() -> None:
    # Nothing is detected yet (the number is unfinished), so only the digit rule stops a cut
    # between its groups.
    digits = " ".join(["12", "34", "56", "78", "90"] * 4)
    output = StreamingRedactor(PhraseRedactor("never present"), 100)
    assert output.feed("x" * 60 + " account ref " + digits) == "x" * 60 + " account ref "
    assert output.flush() == digits


def test_redacts_only_when_a_new_cut_appears_when_fed_char_by_char() -> None:
    redactor = PhraseRedactor("never present")
    output = StreamingRedactor(redactor, 400)
    text = "One sentence here. Another one there. And a last one without end"
    shown = "".join(output.feed(char) for char in text) + output.flush()
    assert shown == text
    assert redactor.calls == 3  # two sentence ends and the flush, not one per character


def test_refused_cut_is_not_retried_when_no_new_cut_appears() -> None:
    redactor = PhraseRedactor("Ann Lee")
    output = StreamingRedactor(redactor, 80)
    output.feed("z" * 70 + " Ann")
    output.feed(" Lee" + "q" * 40)  # the only cut candidate is inside "Ann Lee"
    calls = redactor.calls
    for char in "q" * 30:
        assert output.feed(char) == ""
    assert redactor.calls == calls


@pytest.mark.parametrize("pieces", [[], [""], ["", ""]])
def test_flush_returns_nothing_when_nothing_was_fed(pieces: list[str]) -> None:
    output = StreamingRedactor(REDACTOR, 400)
    assert [output.feed(piece) for piece in pieces] == [""] * len(pieces)
    assert output.flush() == ""
    assert output.held_chars == 0


def test_filter_starts_clean_when_reused_after_flush() -> None:
    output = StreamingRedactor(REDACTOR, 400)
    output.feed("Order 4111")
    assert output.flush() == "Order 4111"
    assert output.feed("New answer. ") == "New answer. "


@pytest.mark.parametrize("max_hold", [0, TAIL_CHARS])
def test_constructor_refuses_hold_limit_when_not_above_tail(max_hold: int) -> None:
    with pytest.raises(ValueError, match="max_hold_chars"):
        StreamingRedactor(REDACTOR, max_hold)
