"""The storage `scrub` stage: names the PII stage missed and long numbers kept out of storage,
everyday words, the knowledge base's words and identifiers left alone."""

from __future__ import annotations

import sys

import pytest

from bot.errors import ConfigError
from policies import scrub
from policies.base import Context, TextPolicy
from policies.scrub import NAME, NUMBER, ScrubRules, ScrubStage
from policies.verdicts import Allow, Finding

STORAGE = Context("storage")
KB = frozenset({"websphere", "jazzsm", "northwind"})


@pytest.fixture(scope="module")
def stage() -> ScrubStage:
    stage = ScrubStage(ScrubRules(), lambda: KB)
    stage.warm_up()
    return stage


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # Names the PII stage's NER misses (presidio-evaluator's customer sentences).
        ("What's your last name? Sjöberg", f"What's your last name? {NAME}"),
        (
            "our 3 founders: Svensson, Estrada and Scott.",
            f"our 3 founders: {NAME}, {NAME} and {NAME}.",  # Scott: listed with a name
        ),
        ("early Hayashida's songs", f"early {NAME} songs"),
        ("Zrina D Ivanović wrote", f"{NAME} D {NAME} wrote"),
        ("a letter to McDonald", f"a letter to {NAME}"),
        ("Thorkildsen-Frandsen called", f"{NAME} called"),
        # A surname that is an English word, listed with a name.
        ("Heiðarsson and Stone were engineers", f"{NAME} and {NAME} were engineers"),
        ("Stone, Wood and <PERSON> came", f"Stone, {NAME} and <PERSON> came"),
        ("ask <PERSON_3f9a0c> or Hill", f"ask <PERSON_3f9a0c> or {NAME}"),
        # Long numbers, however they are spaced.
        ("stop messages to 468 3505", f"stop messages to {NUMBER}"),
        ("Office: 42-51-49-67", f"Office: {NUMBER}"),
        ("call (555) 010-4477 now", f"call {NUMBER} now"),
        ("call +41 43 363 95 32", f"call {NUMBER}"),
    ],
)
def test_what_the_pii_stage_missed_is_not_stored(stage: ScrubStage, text: str, stored: str) -> None:
    verdict = stage.check(text, STORAGE)
    assert verdict == Allow(stored, findings=verdict.findings)
    assert verdict.findings and all(f.action == "redact" for f in verdict.findings)


@pytest.mark.parametrize(
    "text",
    [
        "Where is my parcel? It was due on Monday.",
        "I've been charged twice; Couldn't you refund it?",
        "Returns and Shipping: I tried ordering Blue Jackets in Paris",  # inflected forms
        "IBM VPs said the PDF was fine",  # acronyms
        "Hi <PERSON>, your card <CREDIT_CARD> is on file",  # the PII stage's own tags
        "WebSphere and JazzSM on Northwind",  # the knowledge base's words
        "QueueManager and WebService fail",  # class names made of English words
        "CVE-2017-3156 is fixed in 8.5.5.9, error CWWKF0001E",  # identifiers, versions
        "order 884123 of Sep 12",  # six digits; a month's abbreviation
        "Hi <PERSON>, Thanks for the Refund",  # a comma alone does not make a list
        "<PERSON> and I went to IBM",  # function words and acronyms next to a name
        "",
    ],
)
def test_everyday_text_is_stored_unchanged(stage: ScrubStage, text: str) -> None:
    assert stage.check(text, STORAGE) == Allow(text)


def test_findings_count_each_kind_and_never_hold_the_text(stage: ScrubStage) -> None:
    verdict = stage.check("Sjöberg and Trevisan at 468 3505", STORAGE)
    assert verdict.findings == (
        Finding("scrub", "unknown_word", "redact", "NAME", 2),
        Finding("scrub", "digits", "redact", "NUMBER", 1),
    )
    assert "Sjöberg" not in repr(verdict.findings)


@pytest.mark.parametrize(
    ("rules", "text", "stored"),
    [
        (ScrubRules(enabled=False), "Sjöberg 468 3505", "Sjöberg 468 3505"),
        (ScrubRules(unknown_words=False), "Sjöberg 468 3505", f"Sjöberg {NUMBER}"),
        (ScrubRules(digits=0), "Sjöberg 468 3505", f"{NAME} 468 3505"),
        (ScrubRules(digits=12), "Sjöberg 468 3505", f"{NAME} 468 3505"),
    ],
)
def test_each_rule_can_be_turned_off(rules: ScrubRules, text: str, stored: str) -> None:
    stage = ScrubStage(rules)
    stage.warm_up()
    assert stage.check(text, STORAGE).text == stored  # type: ignore[union-attr]


def test_the_knowledge_base_is_asked_at_each_check() -> None:
    words: set[str] = set()
    stage = ScrubStage(ScrubRules(), lambda: words)
    assert stage.check("Kallax shelves", STORAGE).text == f"{NAME} shelves"  # type: ignore[union-attr]
    words.add("kallax")  # re-ingested: the help center now has an article on it
    assert stage.check("Kallax shelves", STORAGE).text == "Kallax shelves"  # type: ignore[union-attr]


def test_stage_keeps_the_text_policy_protocol() -> None:
    stage: TextPolicy = ScrubStage(ScrubRules())
    assert stage.name == "scrub"


def test_warm_up_says_what_to_install_when_the_word_list_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scrub.english_words.cache_clear()
    monkeypatch.setitem(sys.modules, "english_words", None)
    try:
        with pytest.raises(ConfigError, match="pip install english-words"):
            ScrubStage(ScrubRules()).warm_up()
        ScrubStage(ScrubRules(unknown_words=False)).warm_up()  # not needed: no error
    finally:
        monkeypatch.undo()
        scrub.english_words.cache_clear()


@pytest.mark.parametrize(
    "text",
    [
        "[10/16/17 13:50:05:273 EDT] 00000088 Server started",  # a log line: time, thread id
        "Wed June 25 2009 09:20:02",
        "2016-05-06 20:31:37.723 and 2016.05.06",
        "CVE-2016-1000031 is fixed",
        "server version: 2.1.0.0-1.1-4140.FP4",
    ],
)
def test_dates_versions_and_log_counters_are_not_someones_number(
    stage: ScrubStage, text: str
) -> None:
    assert stage.check(text, STORAGE).text == text  # type: ignore[union-attr]
