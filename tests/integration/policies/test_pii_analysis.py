"""How PresidioRedactor prepares text for presidio: the slimmed spaCy pipeline, its lemmas,
and escaped line breaks read as real ones."""

from __future__ import annotations

import pytest

from policies.pii import PresidioRedactor, _lemma, _unescaped

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("word", "lemma"),
    [
        ("cards", "card"),
        ("called", "call"),
        ("calling", "call"),
        ("registered", "register"),
        ("companies", "company"),
        ("sms", "sms"),  # too short to be a plural
        ("address", "address"),  # "ss" is no plural
        ("phone", "phone"),
        ("red", "red"),  # too short for "-ed"
        ("sing", "sing"),  # too short for "-ing"
    ],
)
def test_lemma_drops_plural_and_verb_endings_when_long_enough(word: str, lemma: str) -> None:
    assert _lemma(word) == lemma


@pytest.mark.parametrize(
    ("text", "read"),
    [
        (r"Kvarda\nPhone", "Kvarda\n Phone"),
        (r"a\tb", "a\t b"),
        ("no escapes\nhere", "no escapes\nhere"),
        (r"C:\data", r"C:\data"),  # other backslashes stay
    ],
)
def test_escaped_breaks_read_as_real_ones_when_analyzed(text: str, read: str) -> None:
    assert _unescaped(text) == read
    assert len(_unescaped(text)) == len(text)


def test_only_ner_runs_when_it_has_its_own_tok2vec(presidio: PresidioRedactor) -> None:
    nlp = presidio._analyzer.nlp_engine.nlp["en"]
    assert nlp.pipe_names == ["switchboard_lemma", "ner"]


def test_entities_are_those_of_the_full_pipeline_when_slimmed(
    presidio: PresidioRedactor,
) -> None:
    import spacy

    full = spacy.load(presidio._policy.spacy_model)
    slim = presidio._analyzer.nlp_engine.nlp["en"]
    texts = [
        "My name is Maria Garcia and I live in Berlin.",
        "Ask Tom Baker at Acme Corp about the refund of 12 March.",
        "Hélène Fremont, Thyrocare Technologies Ltd, Runkelen, Belgium",
    ]
    for text in texts:
        expected = [(e.text, e.label_) for e in full(text).ents]
        assert [(e.text, e.label_) for e in slim(text).ents] == expected
