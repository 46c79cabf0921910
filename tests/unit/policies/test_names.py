"""The first-name list finds names spaCy's small model misses, and leaves everyday words,
brands, addresses and product titles alone (real lists: gender-guesser, english-words)."""

from __future__ import annotations

import importlib.util

import pytest

from bot.errors import ConfigError
from policies import names
from policies.names import find_names, first_names, next_to_number


def found(text: str) -> list[str]:
    return [text[start:end] for start, end in find_names(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tuomo lives on Metsanurga 48 street.", ["Tuomo"]),
        ("Lukas, can I please speak to your boss?", ["Lukas"]),
        ("we need to add Jasna D. Perković as guardian", ["Jasna D. Perković"]),
        ("Riku M Andou's order never came", ["Riku M Andou"]),
        ("Can Jane Doe reach you tomorrow?", ["Jane Doe"]),
        ("Hi Maria Garcia, thanks", ["Maria Garcia"]),
        ("I'm so jealous! said Lasse to Teresa", ["Lasse", "Teresa"]),
        ("Mark Thompson called about the invoice", ["Mark Thompson"]),  # "Mark" + a surname
        ("Žarko: What a wife.", ["Žarko"]),
    ],
)
def test_names_are_found_with_their_surname(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Will you refund my Visa card?",  # a modal verb and a card brand
        "May I get a grace period?",
        "I paid with Apple Pay and Chase declined it",
        "Mark my order as a gift",  # a verb at the start
        "We run Red Hat Linux on the server",  # a product title, not a person
        "The delivery is due Jan 12",  # a month before a number
        "Ship it to 32752 José matía 66",  # a street next to its number
        "Deliver to Jasper Ave please",  # not a first name with a street word
        "Meet me at Oskar Square",  # a first name before a street word
        "LUKAS IS SHOUTING",  # all capitals: not a name's case
        "lukas wrote in lower case",  # lower case: not a name's case either
        "The Hope Foundation answered",  # "The" starts a title
    ],
)
def test_everyday_words_brands_and_addresses_are_not_names(text: str) -> None:
    assert found(text) == []


def test_the_list_is_large_and_international() -> None:
    names_ = first_names()
    assert len(names_) > 30_000
    assert {"Tuomo", "Žarko", "Hélène", "Lukas", "Emily"} <= names_


def test_a_missing_package_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gender_guesser" else real(name, *a),
    )
    with pytest.raises(
        ConfigError, match=r"pip install gender-guesser==0\.4\.0.*first_names: false"
    ):
        names._names_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("between him and Petra's kid", ["Petra"]),  # the possessive is not part of the name
        ("We opened an office in France", []),  # a first name alone after "in" is a place
        ("The letter arrived at Oskar and Hindsholmvej 75", []),
        ("I met Teresa Lindqvist in Oslo", ["Teresa Lindqvist"]),
    ],
)
def test_possessives_and_places(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "words", "address"),
    [
        ("6853 Eriksbo Västergärde 98 Suite 606", "Eriksbo Västergärde", True),
        ("I'll meet you at 93068 Laukaantie 26", "Laukaantie", True),
        ("The parcel is due Jan 12", "Jan", True),
        ("Call John 555 0182 after five", "John", False),  # a phone number, not a house
        ("Thanks Maria, 2 items are missing", "Maria", False),
        ("Order 123 for Maria Garcia", "Maria Garcia", False),  # "for" between them
    ],
)
def test_a_house_number_or_a_day_next_to_words_makes_them_an_address(
    text: str, words: str, address: bool
) -> None:
    start = text.index(words)
    assert next_to_number(text, start, start + len(words)) is address


@pytest.mark.parametrize(
    "text", ["Okay, I won't do that.", "Uh, my parcel never came", "I live in London now"]
)
def test_words_newer_than_websters_and_places_are_not_names(text: str) -> None:
    assert found(text) == []
