"""PatternRedactor: the regex-only redactor the fast tests run on. Positive and negative rows."""

from __future__ import annotations

from itertools import pairwise

import pytest

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
