"""The grounding check with the real MiniLM on the demo help center (demo/kb).

Passages are the articles' sections, as the retriever hands them to the prompt: each
answer is checked against the sections of its own article and of one unrelated article.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from knowledge.embeddings import MiniLMEmbedder
from policies.grounding import GroundingChecker, plant_number, split_sentences

pytestmark = pytest.mark.integration

KB = Path(__file__).resolve().parents[3] / "demo" / "kb"


def _sections(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ")
    return [f"{title}\n{part.strip()}" for part in re.split(r"\n(?=## )", text) if part.strip()]


ARTICLES = {path.stem: _sections(path) for path in sorted(KB.glob("*.md"))}
NAMES = sorted(ARTICLES)


def passages(article: str) -> list[str]:
    """The article's sections and, as a distractor, the next article's."""
    other = NAMES[(NAMES.index(article) + 1) % len(NAMES)]
    return ARTICLES[article] + ARTICLES[other]


@pytest.fixture(scope="module")
def checker() -> GroundingChecker:
    checker = GroundingChecker(MiniLMEmbedder())  # the default min_similarity
    checker.warm_up()
    return checker


FAITHFUL = [
    (
        "refunds",
        "Your refund goes back to the card or account you paid with, within 5 business days "
        "of the warehouse getting your return.",
    ),
    ("refunds", "If you pick store credit, it lands in your account right away."),
    (
        "refunds",
        "Heads up: if you paid with Apple Pay, the money goes back to the card in your "
        "Apple Wallet.",
    ),
    ("refunds", "Since you cancelled within the hour, you were never actually charged."),
    ("refunds", "Import duties on international orders aren't refunded by us."),
    (
        "shipping-options-and-times",
        "Express delivery costs $14.95 and arrives in 1 to 2 business days.",
    ),
    ("shipping-options-and-times", "Standard shipping is free when your order is over 50 dollars."),
    (
        "shipping-options-and-times",
        "If you order before 2 p.m. Eastern on a business day, it ships the same day.",
    ),
    ("shipping-options-and-times", "Weekend orders go out the next business day."),
    (
        "shipping-options-and-times",
        "A few remote addresses in Alaska and Hawaii might need an extra day.",
    ),
    ("returns-policy", "You can send back unused items within thirty days of delivery."),
    ("returns-policy", "Returns are free for US customers, using the prepaid UPS label."),
    ("returns-policy", "Want a different size? Send the original back and order the new one."),
    (
        "returns-policy",
        "If it arrived broken, get in touch and we'll sort it out even for Final sale items.",
    ),
    ("contact-us", "You can reach our support chat from 8 am to 8 pm Eastern, Monday to Saturday."),
    (
        "contact-us",
        "Email support@northwind.example and we'll get back to you within 1 business day.",
    ),
    (
        "contact-us",
        "If anyone claiming to be Northwind asks for your password, don't share it and tell us.",
    ),
    ("payment-methods", "We take the usual cards as well as PayPal and Apple Pay."),
    ("placing-an-order", "You don't need an account to buy from us; you can check out as a guest."),
]

UNSUPPORTED = [
    ("refunds", "Refunds are issued within 10 business days of your return reaching us."),
    ("refunds", "We refund 50% of the original shipping charges on every return."),
    ("refunds", "A $5 restocking fee is deducted from each refund."),
    ("refunds", "Refunds can also be sent to your Venmo account."),
    (
        "shipping-options-and-times",
        "Express shipping costs $19.95 and arrives in 1-2 business days.",
    ),
    ("shipping-options-and-times", "Standard shipping takes 5-7 business days."),
    ("shipping-options-and-times", "Orders placed before 4 pm Eastern ship the same day."),
    ("shipping-options-and-times", "Standard shipping is free on orders over $75."),
    ("returns-policy", "Unused items can be returned within 60 days of delivery."),
    ("returns-policy", "Returns are sent back with FedEx, free of charge."),
    ("contact-us", "Our support chat is open 24 hours a day, 7 days a week."),
    ("contact-us", "Call us on +1 555 0199 at any time."),
    ("contact-us", "Our stores offer free coffee to loyalty members."),
    ("returns-policy", "We plant a tree for every order you place."),
    ("payment-methods", "You can book a personal styling session online."),
]


@pytest.mark.parametrize(("article", "sentence"), FAITHFUL)
def test_faithful_paraphrase_is_supported_when_checked_against_its_article(
    checker: GroundingChecker, article: str, sentence: str
) -> None:
    check = checker.check(sentence, passages(article))
    assert check.supported, check


@pytest.mark.parametrize(("article", "sentence"), UNSUPPORTED)
def test_invented_claim_is_unsupported_when_the_article_does_not_say_it(
    checker: GroundingChecker, article: str, sentence: str
) -> None:
    check = checker.check(sentence, passages(article))
    assert not check.supported, check


@pytest.mark.xfail(strict=True, reason="known gap: a contradiction on the same subject with no "
                   "number or name scores as similar as a paraphrase")  # fmt: skip
def test_contradiction_without_a_fact_is_unsupported_when_it_stays_on_the_subject(
    checker: GroundingChecker,
) -> None:
    check = checker.check("Refunds can be collected in cash at any store.", passages("refunds"))
    assert not check.supported


def _answers(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` answers made of one or two consecutive sentences of one article's section,
    some with a greeting or a sign-off, round-robin over the articles."""
    answers = []
    for index in range(count):
        article = NAMES[index % len(NAMES)]
        sections = [s for s in ARTICLES[article][1:] if len(split_sentences(s)) > 2]
        sentences = split_sentences(rng.choice(sections))[1:]  # not the heading
        start = rng.randrange(len(sentences))
        body = " ".join(sentences[start : start + rng.choice((1, 2))])
        opener = rng.choice(("", "", "Good question! ", "Hi! "))
        closer = rng.choice(("", "", " Happy to help!", " Anything else I can do?"))
        answers.append((article, opener + body + closer))
    return answers


def test_planted_numbers_are_caught_and_faithful_answers_pass_when_measured(
    checker: GroundingChecker,
) -> None:
    rng = random.Random(11)
    answers = _answers(40, rng) + [(article, sentence) for article, sentence in FAITHFUL]
    false_alarms = caught = 0
    for article, answer in answers:
        grounds = passages(article)
        if not all(check.supported for check in checker.check_answer(answer, grounds)):
            false_alarms += 1
        planted = plant_number(answer, grounds, rng)
        if not all(check.supported for check in checker.check_answer(planted, grounds)):
            caught += 1
    catch_rate, false_alarm_rate = caught / len(answers), false_alarms / len(answers)
    print(
        f"\ngrounding on {len(answers)} demo answers: planted numbers caught "
        f"{catch_rate:.1%}, false alarms on unplanted answers {false_alarm_rate:.1%}"
    )
    assert catch_rate >= 0.8
    assert false_alarm_rate <= 0.2
