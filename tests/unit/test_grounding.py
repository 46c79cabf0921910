"""The grounding check with the hashing embedder: sentences, claims, streaming, the policy
section and the audit findings. The real MiniLM is tested in
tests/integration/policies/test_grounding_minilm.py."""

from __future__ import annotations

import random

import pytest

from knowledge.embeddings import HashingEmbedder
from policies.grounding import (
    ACTION_OF,
    GroundingChecker,
    GroundingRules,
    SentenceCheck,
    StreamingGrounding,
    claims,
    findings,
    plant_number,
    split_sentences,
)
from policies.schema import PolicyFile, parse_policy
from tests.support import assert_policy_error

PASSAGES = (
    "Shipping options and times\nExpress shipping takes **1-2 business days** and costs "
    "**$14.95**, whatever the order value. Standard shipping takes 3-5 business days and "
    "costs $5.95. It is free on orders over $50.",
    "Orders placed before **2 pm Eastern** on a business day ship the same day. We ship "
    "every order from our warehouse in Columbus, Ohio.",
    "Refunds\nRefunds are issued to your original payment method within 5 business days "
    "after our warehouse receives your return. PayPal payments go back to your PayPal account.",
)


@pytest.fixture
def checker() -> GroundingChecker:
    return GroundingChecker(HashingEmbedder(), min_similarity=0.3)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two!  Three?", ["One.", "Two!", "Three?"]),
        ("Express costs $14.95. It is fast.", ["Express costs $14.95.", "It is fast."]),
        ("Pay by card, e.g. Visa. Then wait.", ["Pay by card, e.g. Visa.", "Then wait."]),
        ("It takes 1-2 days, i.e. fast.", ["It takes 1-2 days, i.e. fast."]),
        ("Ask Dr. Lee. She knows.", ["Ask Dr. Lee.", "She knows."]),
        (
            "See https://help.example.com/a.b?x=1. Done.",
            ["See https://help.example.com/a.b?x=1.", "Done."],
        ),
        (
            "Steps:\n1. Open Account > Orders.\n2. Select Return item.",
            ["Steps:", "1. Open Account > Orders.", "2. Select Return item."],
        ),
        (
            "You can pay with:\n- **Visa**\n- PayPal\n\nThanks!",
            ["You can pay with:", "- **Visa**", "- PayPal", "Thanks!"],
        ),
        ('He said "Go." Then left.', ['He said "Go."', "Then left."]),
        ("No trailing period", ["No trailing period"]),
        ("  \n", []),
    ],
)
def test_sentences_split_at_real_ends_when_text_has_abbreviations_numbers_and_lists(
    text: str, sentences: list[str]
) -> None:
    assert split_sentences(text) == sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Express costs $14.95.", {"$14.95"}),
        ("That is 14.95 dollars or USD 5.", {"$14.95", "$5"}),
        ("It costs $5.00, not $1,000.", {"$5", "$1000"}),
        ("Save 10% or 15 percent.", {"10%", "15%"}),
        ("It takes 1-2 business days.", {"1-2 days"}),
        ("It takes 3 to 5 days or between 3 and 5 working days.", {"3-5 days"}),
        ("Returns within thirty days or a 30-day window.", {"30 days"}),
        ("Refunds take five business days, orders ship in 24 hours.", {"5 days", "24 hours"}),
        ("Cancel within one hour.", {"1 hour"}),
        (
            "Sale ends March 3 or on 2024-05-01 or 3rd of May, 2025.",
            {"March 3", "2024-05-01", "2025-05-03"},
        ),
        ("Order before 2 pm or 2:30 p.m. or 14:45.", {"14:00", "14:30", "14:45"}),
        ("Your order NW-482913 has shipped.", {"NW-482913"}),
        ("Write to Support@Northwind.example today.", {"support@northwind.example"}),
        ("We ship to 40 countries.", {"40"}),
        ("Pay with Visa or American Express.", {"Visa", "American Express"}),
        ("PayPal payments go back to PayPal.", {"PayPal"}),
        ("Our warehouse is in Columbus, Ohio.", {"Columbus", "Ohio"}),
        # negatives: sentence openers, pronouns, links, citations and placeholders
        ("Express is the fastest option.", set()),
        ("If you want, I can help.", set()),
        ("See https://help.example.com/articles/42 for more [1].", set()),
        ("We emailed <EMAIL_ADDRESS> about it.", set()),
        ("Someone will answer soon.", set()),
    ],
)
def test_claims_are_normalized_when_extracted(text: str, expected: set[str]) -> None:
    assert claims(text) == expected


def test_sentence_is_supported_when_its_facts_are_in_the_passages(
    checker: GroundingChecker,
) -> None:
    check = checker.check("Express shipping costs $14.95 and takes 1-2 business days.", PASSAGES)
    assert check.supported and check.reason == "grounded" and check.missing == ()
    assert check.similarity >= 0.3


@pytest.mark.parametrize(
    ("sentence", "missing", "reason"),
    [
        ("Express shipping costs $19.95.", ("$19.95",), "unsupported_number"),
        ("Express shipping takes 1-3 business days.", ("1-3 days",), "unsupported_number"),
        ("Refunds are issued within 10 business days.", ("10 days",), "unsupported_number"),
        ("Orders placed before 4 pm ship the same day.", ("16:00",), "unsupported_number"),
        ("We ship every order from our warehouse in 12 cities.", ("12",), "unsupported_number"),
        ("Payments with Klarna go back to your account.", ("Klarna",), "unsupported_name"),
    ],
)
def test_sentence_is_unsupported_naming_the_fact_when_a_fact_is_not_in_the_passages(
    checker: GroundingChecker, sentence: str, missing: tuple[str, ...], reason: str
) -> None:
    check = checker.check(sentence, PASSAGES)
    assert not check.supported
    assert check.missing == missing and check.reason == reason


def test_names_are_not_checked_when_check_names_is_off() -> None:
    checker = GroundingChecker(HashingEmbedder(), min_similarity=0.3, check_names=False)
    assert checker.check("Payments with Klarna go back to your account.", PASSAGES).supported


@pytest.mark.parametrize(
    "sentence",
    [
        "Hi there!",
        "Happy to help!",
        "Thanks for reaching out.",
        "Happy trails!",
        "I'm sorry to hear that.",
        "Would you like to talk to a person?",
        "Which order is this about?",
        "I can connect you with a member of our team.",
        "Let me know if you have any other questions.",
    ],
)
def test_sentence_without_content_is_supported_when_it_is_chitchat_or_a_question(
    checker: GroundingChecker, sentence: str
) -> None:
    check = checker.check(sentence, PASSAGES)
    assert check == SentenceCheck(sentence, True, 0.0, (), "no_content", sentence)


def test_sentence_is_unsupported_when_it_is_far_from_every_passage(
    checker: GroundingChecker,
) -> None:
    check = checker.check("Drones drop parcels onto balconies.", PASSAGES)
    assert not check.supported and check.reason == "low_similarity" and check.missing == ()
    assert not checker.check("Express costs $14.95.", []).supported  # nothing to ground on


def test_question_with_a_wrong_fact_is_unsupported_when_checked(
    checker: GroundingChecker,
) -> None:
    check = checker.check("Did you know Express costs $9.95?", PASSAGES)
    assert not check.supported and check.missing == ("$9.95",)


def test_raw_sentences_rebuild_the_answer_when_joined(checker: GroundingChecker) -> None:
    answer = "Hi!\n\nExpress costs $14.95.  It takes 1-3 days.\n- PayPal refunds go to PayPal."
    checks = checker.check_answer(answer, PASSAGES)
    assert "".join(check.raw for check in checks) == answer
    assert [check.supported for check in checks] == [True, True, False, True]
    kept = "".join(check.raw for check in checks if check.supported)
    assert kept == "Hi!\n\nExpress costs $14.95.  - PayPal refunds go to PayPal."


def test_split_number_is_judged_only_when_its_sentence_completes(
    checker: GroundingChecker,
) -> None:
    stream = StreamingGrounding(checker, PASSAGES)
    for piece in ["Express costs $1", "4.", "9", "5 and", " takes 1-", "2 business days", "."]:
        assert stream.feed(piece) == []
    [check] = stream.feed(" Anything")
    assert check.text == "Express costs $14.95 and takes 1-2 business days."
    assert check.supported and check.raw.endswith(". ")
    assert stream.held == "Anything"
    [last] = stream.flush()
    assert last.text == "Anything" and stream.flush() == []


def test_planted_number_split_across_pieces_is_caught_when_the_sentence_completes(
    checker: GroundingChecker,
) -> None:
    stream = StreamingGrounding(checker, PASSAGES)
    assert stream.feed("Express costs $1") == [] and stream.feed("9.95") == []
    assert stream.feed(".\n") == []  # the end is only certain once the next sentence starts
    [check] = stream.feed("Thanks!")
    assert not check.supported and check.missing == ("$19.95",)


def test_trailing_sentence_without_a_period_is_judged_when_flushed(
    checker: GroundingChecker,
) -> None:
    stream = StreamingGrounding(checker, PASSAGES)
    assert stream.feed("Standard shipping costs $7.95") == []
    [check] = stream.flush()
    assert check.text == "Standard shipping costs $7.95" and check.missing == ("$7.95",)


@pytest.mark.parametrize("seed", range(20))
def test_stream_gives_the_same_verdicts_as_the_whole_answer_when_split_anywhere(
    checker: GroundingChecker, seed: int
) -> None:
    answer = (
        "Hi! Express costs $14.95, e.g. for trips. It takes 1-2 business days.\n"
        "1. Order before 2 pm Eastern.\n2. Refunds take 7 days. Happy trails"
    )
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(answer)), 12))
    pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
    stream = StreamingGrounding(checker, PASSAGES)
    streamed = [check for piece in pieces for check in stream.feed(piece)] + stream.flush()
    assert streamed == checker.check_answer(answer, PASSAGES)


def test_findings_count_unsupported_sentences_by_rule_without_text_when_mapped(
    checker: GroundingChecker,
) -> None:
    answer = "Express costs $19.95. Standard costs $8.95. You can pay with Klarna. Happy to help!"
    found = findings(checker.check_answer(answer, PASSAGES), ACTION_OF["regenerate"])
    assert [(f.stage, f.rule, f.action, f.count) for f in found] == [
        ("grounding", "unsupported_name", "rewrite", 1),
        ("grounding", "unsupported_number", "rewrite", 2),
    ]
    assert all(f.score is not None and 0.0 <= f.score <= 1.0 for f in found)
    assert findings(checker.check_answer("Express costs $14.95.", PASSAGES), "block") == ()


def test_planted_number_is_absent_from_the_passages_when_a_number_is_changed(
    checker: GroundingChecker,
) -> None:
    answer = "Express shipping costs $14.95 and takes 1-2 business days."
    for seed in range(30):
        planted = plant_number(answer, PASSAGES, random.Random(seed))
        assert planted != answer and len(claims(planted) - claims(answer)) == 1
        assert not all(check.supported for check in checker.check_answer(planted, PASSAGES))


def test_planted_sentence_is_appended_when_the_answer_has_no_number() -> None:
    answer = "PayPal refunds go back to your PayPal account."
    planted = plant_number(answer, PASSAGES, random.Random(1))
    assert planted.startswith(answer + " ") and len(split_sentences(planted)) == 2
    assert plant_number(answer, PASSAGES, random.Random(1)) == planted  # seeded: repeatable


def test_rules_build_a_checker_when_the_section_is_parsed() -> None:
    policy = parse_policy(
        "version: 1\ngrounding:\n  min_similarity: 0.6\n  check_names: false\n"
        "  on_unsupported: refer\n  refer_reply: 'See {articles}.'\n"
        "channels:\n  slack:\n    grounding: {on_unsupported: drop}\n"
    )
    assert policy.grounding.on_unsupported == "refer"
    assert policy.for_channel("slack").grounding.on_unsupported == "drop"
    assert policy.for_channel("slack").grounding.min_similarity == 0.6
    checker = GroundingChecker.from_rules(policy.grounding, HashingEmbedder())
    assert checker.min_similarity == 0.6 and not checker.check_names
    assert PolicyFile(version=1).grounding == GroundingRules()


@pytest.mark.parametrize(
    ("text", "line", "location", "phrase"),
    [
        (
            "version: 1\ngrounding:\n  enabled: true\n  on_unsupported: retry\n",
            4,
            "grounding.on_unsupported",
            "'regenerate', 'drop' or 'refer'",
        ),
        (
            "version: 1\ngrounding:\n  min_similarity: 1.5\n",
            3,
            "grounding.min_similarity",
            "less than or equal to 1",
        ),
        (
            "version: 1\ngrounding:\n  refer_reply: 'See {links}'\n",
            3,
            "grounding.refer_reply",
            "only use the placeholder {articles}",
        ),
        (
            "version: 1\ngrounding:\n  check_name: true\n",
            3,
            "grounding.check_name",
            "unknown key",
        ),
        (
            "version: 1\nchannels:\n  web:\n    grounding:\n      on_unsupported: ask\n",
            5,
            "channels.web.grounding.on_unsupported",
            "'regenerate', 'drop' or 'refer'",
        ),
    ],
)
def test_error_names_the_line_when_the_grounding_section_is_invalid(
    text: str, line: int, location: str, phrase: str
) -> None:
    assert_policy_error(text, line, location, phrase)
