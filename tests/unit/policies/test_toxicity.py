"""ToxicityStage with the real alt-profanity-check model: abuse blocked, customers served.

Positive and negative rows at the input and output points, the section's validation
errors, and failing closed when the detector breaks.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from bot.errors import ConfigError
from policies import toxicity
from policies.base import Context, TextPolicy
from policies.toxicity import ToxicityRules, ToxicityStage
from policies.verdicts import Allow, Block

REPLY = "Let's keep this friendly. How can I help?"
INPUT = Context(point="input")
OUTPUT = Context(point="output")


@pytest.fixture(scope="module")
def stage() -> Iterator[ToxicityStage]:
    """The default section with the real model, warmed up once."""
    stage = ToxicityStage(ToxicityRules(), REPLY)
    stage.warm_up()
    yield stage


@pytest.mark.parametrize(
    "text",
    [
        "you are a fucking idiot",
        "this is bullshit, you useless piece of shit",
        "go to hell",
        "I will kill you",
    ],
)
def test_abuse_is_blocked_when_a_customer_writes_it(stage: ToxicityStage, text: str) -> None:
    verdict = stage.check(text, INPUT)
    assert isinstance(verdict, Block) and verdict.reply == REPLY
    [finding] = verdict.findings
    assert (finding.stage, finding.rule, finding.action) == ("toxicity", "classifier", "block")
    assert finding.score is not None and finding.score >= 0.9


@pytest.mark.parametrize(
    "text",
    [
        "How do I reset my password?",
        "Ignore my last email, I found the receipt",
        "assess the damage to my parcel",
        "Scunthorpe delivery depot",
        "The shipment was killed by customs",
        "What the hell is going on with my order?",  # frustration, not abuse: 0.85 < 0.9
        "damn, I forgot my password",
        "I hate waiting on hold",
        "",
    ],
)
def test_customer_message_is_allowed_when_it_is_not_abuse(stage: ToxicityStage, text: str) -> None:
    verdict = stage.check(text, INPUT)
    assert isinstance(verdict, Allow) and verdict.text == text


@pytest.mark.parametrize(
    ("text", "blocked"),
    [
        ("What the hell is going on with your order?", True),  # the bot never swears
        ("Damn, that order is late. I'm sorry!", False),
        ("Your refund of $20 was sent today.", False),
        ("To assess the damage, send us a photo of the parcel.", False),
    ],
)
def test_answer_is_held_to_the_stricter_threshold_when_the_bot_writes_it(
    stage: ToxicityStage, text: str, blocked: bool
) -> None:
    assert isinstance(stage.check(text, OUTPUT), Block) is blocked


def test_allowed_text_carries_a_flag_when_it_is_borderline(stage: ToxicityStage) -> None:
    verdict = stage.check("What the hell is going on with my order?", INPUT)
    assert [(f.rule, f.action) for f in verdict.findings] == [("classifier", "flag")]


def test_nothing_is_checked_when_the_stage_is_disabled() -> None:
    stage = ToxicityStage(ToxicityRules(enabled=False), REPLY)
    stage.warm_up()
    assert stage.check("you are a fucking idiot", INPUT) == Allow("you are a fucking idiot")


def test_stage_keeps_the_text_policy_protocol() -> None:
    stage: TextPolicy = ToxicityStage(ToxicityRules(), REPLY)
    assert stage.name == "toxicity"


def _broken(text: str) -> float:
    raise ValueError("vectorizer vocabulary missing")


def test_stage_fails_closed_when_the_detector_raises() -> None:
    verdict = ToxicityStage(ToxicityRules(), REPLY, detector=_broken).check("hello", OUTPUT)
    assert isinstance(verdict, Block)
    assert [(f.rule, f.action) for f in verdict.findings] == [("classifier", "error")]


def test_stage_lets_text_through_with_an_error_finding_when_on_error_is_allow() -> None:
    stage = ToxicityStage(ToxicityRules(on_error="allow"), REPLY, detector=_broken)
    verdict = stage.check("hello", INPUT)
    assert isinstance(verdict, Allow) and verdict.text == "hello"
    assert [(f.rule, f.action) for f in verdict.findings] == [("classifier", "error")]


def test_stage_fails_closed_when_check_runs_before_warm_up() -> None:
    verdict = ToxicityStage(ToxicityRules(), REPLY).check("hello", INPUT)
    assert isinstance(verdict, Block) and verdict.findings[0].action == "error"


def test_warm_up_raises_config_error_when_the_model_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "profanity_check", None)
    with pytest.raises(ConfigError, match="alt-profanity-check"):
        ToxicityStage(ToxicityRules(), REPLY).warm_up()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"threshold": 0}, "greater than 0"),
        ({"output_threshold": 2}, "less than or equal to 1"),
        ({"threshold": "high"}, "valid number"),
        ({"on_error": "retry"}, "'block' or 'allow'"),
        ({"treshold": 0.5}, "Extra inputs are not permitted"),
    ],
)
def test_section_is_refused_when_a_value_is_wrong(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ToxicityRules.model_validate(section)


AGREEMENT_ROWS = [
    "Where is my parcel? It was due on Monday and the tracking page has not changed.",
    "what the hell is going on with my order?",
    "you are a fucking idiot",
    "I will kill you",
    "Can I return the boots I bought last week? They are too small.",
    "this product sucks",
    "damn",
    "The installer fails with error CWWKF0001E after the upgrade to 8.5.5.9; the log says the "
    "feature manager could not resolve the dependencies.",
    "",
    "!!!",
]


def test_the_direct_computation_agrees_with_the_package_on_every_row() -> None:
    import profanity_check  # type: ignore[import-untyped]

    detector = toxicity._profanity_detector()
    assert detector.__qualname__.startswith("_linear_detector")  # the fast path is in use
    for text in AGREEMENT_ROWS:
        expected = float(profanity_check.predict_prob([text])[0])
        assert abs(detector(text) - expected) < 1e-12, text


def test_the_package_is_used_when_the_direct_computation_cannot_reproduce_it() -> None:
    import profanity_check

    real = profanity_check.profanity_check

    def package(model: object) -> SimpleNamespace:
        inner = SimpleNamespace(model=model, vectorizer=real.vectorizer)
        return SimpleNamespace(profanity_check=inner)

    def slow(text: str) -> float:
        return float(profanity_check.predict_prob([text])[0])

    assert toxicity._linear_detector(package(real.model), slow) is not None
    isotonic = copy.copy(real.model)
    isotonic.method = "isotonic"
    assert toxicity._linear_detector(package(isotonic), slow) is None
    assert toxicity._linear_detector(package(object()), slow) is None  # no classifiers
    # A probe on which the two disagree (here: a detector that says 0.5 to everything).
    assert toxicity._linear_detector(package(real.model), lambda text: 0.5) is None
