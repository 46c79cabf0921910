"""PatternRedactor: the regex-only redactor the fast tests run on. Positive and negative rows."""

from __future__ import annotations

import hashlib
from itertools import pairwise

import pytest

from bot.errors import ConfigError
from policies.pii import PatternRedactor, Redaction, Redactor, splice
from policies.schema import PiiPolicy


def assert_consistent(original: str, redaction: Redaction) -> None:
    """Every Redactor promises: sorted, non-overlapping spans in the original text."""
    spans = redaction.entities
    assert all(a.end <= b.start for a, b in pairwise(spans))
    assert all(0 <= f.start < f.end <= len(original) for f in spans)
    assert splice(original, spans) == redaction.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail me at john.doe@example.com please", "Mail me at <EMAIL_ADDRESS> please"),
        ("Write to a+b@mail.example.co.uk.", "Write to <EMAIL_ADDRESS>."),
        ("Card 4111 1111 1111 1111 was declined", "Card <CREDIT_CARD> was declined"),
        ("Card 4111-1111-1111-1111.", "Card <CREDIT_CARD>."),
        ("Card 4111111111111111", "Card <CREDIT_CARD>"),
        ("Call (212) 555-0182 after 5pm", "Call <PHONE_NUMBER> after 5pm"),
        ("Call +44 20 7946 0958.", "Call <PHONE_NUMBER>."),
        ("Call 2125550182", "Call <PHONE_NUMBER>"),
        ("It came from 203.0.113.42.", "It came from <IP_ADDRESS>."),
        ("My SSN is 536-90-4399", "My SSN is <US_SSN>"),
        # negative rows: look like PII, are not
        ("Where is order 12345?", "Where is order 12345?"),
        ("Returns are accepted within 30 days.", "Returns are accepted within 30 days."),
        (
            "Card 4111 1111 1111 1112 is not Luhn-valid",
            "Card 4111 1111 1111 1112 is not Luhn-valid",
        ),
        ("Version 3.5 is out", "Version 3.5 is out"),
        ("Not an IP: 999.1.1.1", "Not an IP: 999.1.1.1"),
        ("Write to support at example dot com", "Write to support at example dot com"),
        ("", ""),
    ],
)
def test_redacts_pattern_pii_when_present(text: str, expected: str) -> None:
    redaction = PatternRedactor().redact(text)
    assert redaction.text == expected
    assert_consistent(text, redaction)


def test_reports_types_and_original_positions_when_several_found() -> None:
    text = "Card 4111 1111 1111 1111, mail a@b.io, card again 4111111111111111"
    redaction = PatternRedactor().redact(text)
    assert [(f.entity_type, text[f.start : f.end]) for f in redaction.entities] == [
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("EMAIL_ADDRESS", "a@b.io"),
        ("CREDIT_CARD", "4111111111111111"),
    ]
    assert redaction.entity_types == ("CREDIT_CARD", "EMAIL_ADDRESS")


@pytest.mark.parametrize(
    ("text", "winner"),
    [
        ("4111 1111 1111 1111", "CREDIT_CARD"),  # also a phone-like digit run
        ("536-90-4399", "US_SSN"),  # also phone-like
        ("10.20.30.40", "IP_ADDRESS"),  # also phone-like with dots
    ],
)
def test_one_entity_wins_when_patterns_overlap(text: str, winner: str) -> None:
    redaction = PatternRedactor().redact(text)
    assert [f.entity_type for f in redaction.entities] == [winner]
    assert redaction.text == f"<{winner}>"


@pytest.mark.parametrize(
    ("policy", "text", "expected"),
    [
        (PiiPolicy(enabled=False), "a@b.io", "a@b.io"),
        (PiiPolicy(entities=["PHONE_NUMBER"]), "a@b.io 2125550182", "a@b.io <PHONE_NUMBER>"),
        (PiiPolicy(score_threshold=0.6), "a@b.io 2125550182", "<EMAIL_ADDRESS> 2125550182"),
        (PiiPolicy(replacement="[{entity_type}]"), "a@b.io", "[EMAIL_ADDRESS]"),
        (PiiPolicy(entities=["PERSON"]), "John Smith", "John Smith"),  # no pattern for names
        (PiiPolicy(entities=["US_SSN"]), "536-90-4399", "<US_SSN>"),
        (PiiPolicy(entities=["US_SSN"]), "000-12-3456 666-12-3456", "000-12-3456 666-12-3456"),
    ],
)
def test_follows_policy_when_configured(policy: PiiPolicy, text: str, expected: str) -> None:
    assert PatternRedactor(policy).redact(text).text == expected


def test_satisfies_redactor_protocol_when_used_as_one() -> None:
    redactor: Redactor = PatternRedactor()
    redactor.warm_up()
    assert redactor.redact("a@b.io").entity_types == ("EMAIL_ADDRESS",)


def _policy(**update: object) -> PiiPolicy:
    return PiiPolicy.model_validate({**PiiPolicy().model_dump(), **update})


ORDERS = {
    "name": "order_ids",
    "entity_type": "ORDER_ID",
    "patterns": [{"regex": r"\bORD-\d{6}\b", "score": 0.3}],
    "context": ["order"],
}
ORDER_POLICY = {"recognizers": [ORDERS], "entities": ["ORDER_ID"]}
IBAN = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"


@pytest.mark.parametrize(
    ("update", "text", "expected"),
    [
        # declared pattern below the threshold: counts only with a context word nearby
        (ORDER_POLICY, "my order ORD-123456", "my order <ORDER_ID>"),
        (ORDER_POLICY, "orders: ORD-123456", "orders: <ORDER_ID>"),
        (ORDER_POLICY, "I ordered ORD-123456", "I ordered <ORDER_ID>"),  # lemmas, as presidio
        (ORDER_POLICY, "ref ORD-123456", "ref ORD-123456"),
        (ORDER_POLICY, "ORD-123456 (order) is late", "<ORDER_ID> (order) is late"),  # 2 after
        (ORDER_POLICY, "ORD-123456 is the order", "ORD-123456 is the order"),  # 3 after
        # checksums
        (
            {
                "recognizers": [
                    {"name": "gc", "entity_type": "GIFT_CARD", "checksum": "luhn",
                     "patterns": [{"regex": r"\bGC\d{12}\b"}]},
                ],
                "entities": ["GIFT_CARD"],
            },
            "GC123456789015 GC123456789016",
            "<GIFT_CARD> GC123456789016",
        ),
        (
            {
                "recognizers": [
                    {"name": "iban", "entity_type": "IBAN_CODE", "checksum": "iban",
                     "patterns": [{"regex": IBAN}]},
                ],
                "entities": ["IBAN_CODE"],
            },
            "IBAN GB82 WEST 1234 5698 7654 32, not GB82 WEST 1234 5698 7654 31",
            "IBAN <IBAN_CODE>, not GB82 WEST 1234 5698 7654 31",
        ),
        # deny list: whole words, case-blind
        (
            {"recognizers": [{"name": "codes", "entity_type": "PRODUCT_CODE",
                              "deny_list": ["Falcon-X"]}],
             "entities": ["PRODUCT_CODE"]},
            "falcon-x, Falcon-Xtra",
            "<PRODUCT_CODE>, Falcon-Xtra",
        ),
        # the default recognizers: cards of any issuer with a card word, names after a cue
        ({}, "card 2714821993518192", "card <CREDIT_CARD>"),
        ({}, "My name is Klaudia", "My name is <PERSON>"),
        ({}, "my name is not important", "my name is not important"),
        # operators
        ({"operator": "mask"}, "a@b.io", "****io"),
        ({"operator": "mask", "entities": ["CREDIT_CARD"]}, "4111111111111111", "*" * 12 + "1111"),
        ({"operator": "hash", "hash_salt": "s", "entities": ["EMAIL_ADDRESS"]}, "a@b.io",
         f"<EMAIL_ADDRESS:{hashlib.sha256(b's' + b'a@b.io').hexdigest()[:12]}>"),
        # the allow list wins over declared recognizers too
        (
            {**ORDER_POLICY, "allow": ["ORD-000001"]},
            "order ORD-000001 and order ORD-123456",
            "order ORD-000001 and order <ORDER_ID>",
        ),
    ],
)  # fmt: skip
def test_follows_declared_recognizers_and_operators_when_configured(
    update: dict[str, object], text: str, expected: str
) -> None:
    redactor = PatternRedactor(_policy(**update))
    redactor.warm_up()
    redaction = redactor.redact(text)
    assert redaction.text == expected
    assert_consistent(text, redaction)


def test_warm_up_refuses_hash_when_no_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHBOARD_PII_HASH_SALT", raising=False)
    with pytest.raises(ConfigError, match="salt"):
        PatternRedactor(_policy(operator="hash")).warm_up()


def test_fold_maps_every_character_back_to_where_it_came_from() -> None:
    from policies.pii import fold

    text = "a\u200bb\uff20c\ufb01\u00ad٣"
    folded, origin = fold(text)
    assert folded == "ab@cfi3"
    assert origin == [0, 2, 3, 4, 5, 5, 7]


def test_pattern_redactor_reads_through_zero_width_and_full_width_characters() -> None:
    from policies.pii import PatternRedactor

    redaction = PatternRedactor().redact("mail me at jo\u200be\uff20example.com or later")
    assert redaction.text == "mail me at <EMAIL_ADDRESS> or later"
    assert redaction.entities[0].start == 11
