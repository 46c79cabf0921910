"""The real PresidioRedactor on the default policy: what it finds, what it leaves, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from bot.errors import ConfigError
from policies.engine import PolicyEngine
from policies.pii import PresidioRedactor, splice
from policies.schema import KNOWN_ENTITY_TYPES, PiiPolicy, default_policy_path, load_policy
from policies.verdicts import Allow

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

FOUND = [
    # (customer message, redacted, entity type)
    (
        "Hi, this is Maria Garcia, I need help with my order.",
        "Hi, this is <PERSON>, I need help with my order.",
        "PERSON",
    ),
    (
        "Please send the invoice to maria.garcia@example.com, thanks.",
        "Please send the invoice to <EMAIL_ADDRESS>, thanks.",
        "EMAIL_ADDRESS",
    ),
    # Scores exactly 0.4 without a context word such as "phone": kept only because the
    # threshold is inclusive. Raise score_threshold above 0.4 and this number goes through.
    (
        "You can reach me at (212) 555-0182 after 5pm.",
        "You can reach me at <PHONE_NUMBER> after 5pm.",
        "PHONE_NUMBER",
    ),
    ("My phone number is +1 415 555 2671.", "My phone number is <PHONE_NUMBER>.", "PHONE_NUMBER"),
    (
        "I paid with my card 4111 1111 1111 1111 but it was declined.",
        "I paid with my card <CREDIT_CARD> but it was declined.",
        "CREDIT_CARD",
    ),
    (
        "Please refund to my IBAN GB82 WEST 1234 5698 7654 32.",
        "Please refund to my IBAN <IBAN_CODE>.",
        "IBAN_CODE",
    ),
    # 0.5 alone, 0.85 with "SSN" or "social security" nearby.
    (
        "For the tax form, my SSN is 536-90-4399.",
        "For the tax form, my SSN is <US_SSN>.",
        "US_SSN",
    ),
    (
        "The login came from IP address 203.0.113.42 yesterday.",
        "The login came from IP address <IP_ADDRESS> yesterday.",
        "IP_ADDRESS",
    ),
]

UNCHANGED = [
    "Where is order 12345?",
    "Returns are accepted within 30 days.",
    "Can I change the delivery address for order 55123 to the Chicago office?",
    "The total was $1,234.56 on 12/05/2024.",
    "My card 4111 1111 1111 1112 was declined.",  # fails the card checksum
    "Use promo code SAVE20 at checkout.",
    # First names that are everyday words or brands, alone (policies/names.py).
    "Will you refund my Visa card? May I pay with Apple Pay instead?",
    "We run Red Hat Linux on the server.",
]

# Names en_core_web_sm misses and the first-name list finds (pii.first_names).
FIRST_NAMES = [
    ("Tuomo lives on Metsanurga street.", "<PERSON> lives on Metsanurga street."),
    ("Lukas, can I please speak to your boss?", "<PERSON>, can I please speak to your boss?"),
    (
        "we need to add Jasna D. Perković as guardian",
        "we need to add <PERSON> as guardian",
    ),
]


@pytest.mark.parametrize(("text", "redacted", "entity_type"), FOUND)
def test_redacts_entity_when_customer_mentions_it(
    presidio: PresidioRedactor, text: str, redacted: str, entity_type: str
) -> None:
    redaction = presidio.redact(text)
    assert redaction.text == redacted
    assert redaction.entity_types == (entity_type,)
    found = redaction.entities[0]
    assert found.score >= 0.4
    assert text[found.start : found.end] not in redaction.text


@pytest.mark.parametrize("text", UNCHANGED)
def test_leaves_text_unchanged_when_it_has_no_pii(presidio: PresidioRedactor, text: str) -> None:
    redaction = presidio.redact(text)
    assert (redaction.text, redaction.entities) == (text, ())


@pytest.mark.parametrize(("text", "redacted"), FIRST_NAMES)
def test_first_name_list_finds_names_the_model_misses(
    presidio: PresidioRedactor, text: str, redacted: str
) -> None:
    assert presidio.redact(text).text == redacted
    policy = load_policy(default_policy_path()).pii.model_copy(update={"first_names": False})
    without = PresidioRedactor(policy)
    without.warm_up()
    assert without.redact(text).text != redacted  # the model alone misses it


def test_redacts_every_entity_when_one_message_has_many(presidio: PresidioRedactor) -> None:
    text = (
        "I'm John Smith, email john.smith@example.com, card 4111 1111 1111 1111, "
        "SSN 536-90-4399, from 203.0.113.42, IBAN GB82 WEST 1234 5698 7654 32."
    )
    redaction = presidio.redact(text)
    assert redaction.text == (
        "I'm <PERSON>, email <EMAIL_ADDRESS>, card <CREDIT_CARD>, "
        "SSN <US_SSN>, from <IP_ADDRESS>, IBAN <IBAN_CODE>."
    )
    spans = redaction.entities
    assert all(a.end <= b.start for a, b in pairwise(spans))
    assert splice(text, spans) == redaction.text


def test_overlapping_results_are_trimmed_when_types_differ(presidio: PresidioRedactor) -> None:
    # Presidio's default conflict strategy keeps partial overlaps of different types, which
    # garbles the output; the redactor asks for REMOVE_INTERSECTIONS. Fed directly because
    # the default recognizers rarely overlap partially on real text.
    from presidio_analyzer import RecognizerResult

    text = "Contact John Smith at 555-0182 now"
    overlapping = [
        RecognizerResult("PERSON", 8, 18, 0.85),
        RecognizerResult("PHONE_NUMBER", 14, 30, 0.4),
    ]
    spans = [
        (item.entity_type, item.start, item.end) for item in presidio._resolve(text, overlapping)
    ]
    assert sorted(spans, key=lambda span: span[1]) == [("PERSON", 8, 18), ("PHONE_NUMBER", 18, 30)]


def test_contained_results_collapse_when_analyzer_finds_them(presidio: PresidioRedactor) -> None:
    # With every type on, the analyzer reports DATE_TIME and ORGANIZATION spans inside the IBAN
    # and around the e-mail; one replacement must come out for each.
    redactor = PresidioRedactor(PiiPolicy(entities=sorted(KNOWN_ENTITY_TYPES)))
    redactor.warm_up()
    text = "My IBAN is GB82 WEST 1234 5698 7654 32 and my email is john.smith@example.com."
    redaction = redactor.redact(text)
    assert "GB82" not in redaction.text and "john" not in redaction.text
    assert "<IBAN_CODE>" in redaction.text and "<EMAIL_ADDRESS>" in redaction.text
    assert splice(text, redaction.entities) == redaction.text


def test_schema_lists_only_entities_presidio_detects_when_loaded() -> None:
    # warm_up() refuses types no loaded recognizer serves; every known type must pass.
    PresidioRedactor(PiiPolicy(entities=sorted(KNOWN_ENTITY_TYPES))).warm_up()


def test_warm_up_refuses_model_when_not_installed() -> None:
    # Presidio would call `spacy.cli.download` (the network) for a missing model.
    redactor = PresidioRedactor(PiiPolicy(spacy_model="en_core_web_lg"))
    with pytest.raises(ConfigError, match="not installed"):
        redactor.warm_up()


NETWORK_PROBE = """
import json, socket, sys, time
attempts = []
def refuse(*args, **kwargs):
    attempts.append(str(args[0]))
    raise OSError("network refused by test")
socket.getaddrinfo = refuse
socket.socket.connect = lambda self, address: refuse(address)
from policies.pii import PresidioRedactor
from policies.schema import PiiPolicy
redactor = PresidioRedactor(PiiPolicy())
started = time.perf_counter()
redactor.warm_up()
warm_s = time.perf_counter() - started
text = redactor.redact("Mail me at maria.garcia@example.com.").text
print(json.dumps({"attempts": attempts, "text": text, "warm_s": warm_s}))
"""


@pytest.mark.parametrize(
    ("suffix_list_urls", "network_expected"),
    [
        (None, False),  # not set: warm_up() sets it before presidio imports tldextract
        ("https://publicsuffix.org/list/public_suffix_list.dat", True),  # shows the probe works
    ],
)
def test_no_network_is_tried_when_warming_up_and_redacting(
    tmp_path: Path, suffix_list_urls: str | None, network_expected: bool
) -> None:
    # A fresh process, so nothing imported tldextract before, and an empty tldextract cache.
    env = {k: v for k, v in os.environ.items() if k != "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"}
    env |= {"PYTHONPATH": str(ROOT), "TLDEXTRACT_CACHE": str(tmp_path)}
    if suffix_list_urls is not None:
        env["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = suffix_list_urls
    done = subprocess.run(
        [sys.executable, "-c", NETWORK_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert bool(report["attempts"]) is network_expected, report
    assert report["text"] == "Mail me at <EMAIL_ADDRESS>."


async def test_engine_from_default_file_redacts_when_warmed_up() -> None:
    engine = PolicyEngine.from_file(None)
    engine.warm_up()
    try:
        verdict = await engine.check_input("I'm Maria Garcia, card 4111 1111 1111 1111.")
        assert isinstance(verdict, Allow)
        assert (verdict.text, verdict.entities) == (
            "I'm <PERSON>, card <CREDIT_CARD>.",
            ("PERSON", "CREDIT_CARD"),
        )
    finally:
        engine.close()


def test_allowed_contact_details_stay_when_the_policy_lists_them() -> None:
    policy = load_policy(default_policy_path()).pii.model_copy(
        update={"allow": ["support@northwind.example", "+1 555 0100"]}
    )
    redactor = PresidioRedactor(policy)
    redactor.warm_up()
    text = "Write to support@northwind.example or call +1 555 0100, not jane.roe@example.com."
    redaction = redactor.redact(text)
    assert redaction.text == (
        "Write to support@northwind.example or call +1 555 0100, not <EMAIL_ADDRESS>."
    )


HIDDEN = [
    # (message, the value that must not survive, its type): characters a reader never sees
    # or reads as plain ones, inside the value.
    ("My card is 4111\u00ad1111\u00ad1111\u00ad1111, charge it.", "1111", "CREDIT_CARD"),
    ("Card: 4111\u200b1111\u200b1111\u200b1111 please", "1111", "CREDIT_CARD"),
    ("card 4111 1111\u2060 1111 1111 expires soon", "1111", "CREDIT_CARD"),
    ("Write to maria.garcia\uff20example.com today", "garcia", "EMAIL_ADDRESS"),
    ("Write to maria.garcia\ufe6bexample\uff0ecom today", "garcia", "EMAIL_ADDRESS"),
    ("Mail ｍａｒｉａ＠ｅｘａｍｐｌｅ．ｃｏｍ now", "ｍａｒｉａ", "EMAIL_ADDRESS"),
    ("my card: ４１１１ １１１１ １１１１ １１１１", "１１１１", "CREDIT_CARD"),
    ("card 4111\u20131111\u20131111\u20131111 thanks", "1111", "CREDIT_CARD"),
]


@pytest.mark.parametrize(("text", "secret", "entity"), HIDDEN)
def test_pii_hidden_with_invisible_or_full_width_characters_is_still_redacted(
    presidio: PresidioRedactor, text: str, secret: str, entity: str
) -> None:
    redaction = presidio.redact(text)
    assert secret not in redaction.text, redaction.text
    assert entity in redaction.entity_types
    # Only the value goes: the words around it stay as they were written.
    assert redaction.text.split()[0] == text.split()[0]
    for found in redaction.entities:
        assert redaction.text.count(found.replacement) >= 1


def test_folding_leaves_text_without_hidden_characters_untouched(
    presidio: PresidioRedactor,
) -> None:
    text = "Crème brûlée: order 12345 — arriving in 3–5 days, ½ price, ﬁne print."
    assert presidio.redact(text).text == text
