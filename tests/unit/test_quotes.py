"""Quote-first answers: units, choice, composition, and the promise that a quoted answer
holds only the help center's own sentences. With the real MiniLM, on the demo help center:
tests/integration/knowledge/test_quotes_minilm.py."""

from __future__ import annotations

import itertools
import random

import pytest

from bot.quotes import (
    QuoteAnswerer,
    QuoteScorer,
    Scored,
    choose,
    citations_of,
    cite_answer,
    compose,
    is_echo,
    is_quoted,
    question_parts,
    strip_markup,
    units_of,
)
from bot.types import Citation, Passage
from knowledge.embeddings import HashingEmbedder
from knowledge.spelling import SpellingFixer, one_edit_apart

SHIPPING = Passage(
    "Shipping options — Standard shipping\n\n"
    "Standard shipping takes **3-5 business days** and costs **$5.95**. It is free on "
    "orders over $50. Standard is the default option at checkout.",
    Citation("Shipping options", "shipping.md"),
    1.0,
    heading="Shipping options > Standard shipping",
)
REFUNDS = Passage(
    "Refunds — How the refund is paid\n\n"
    "Refunds are paid as follows:\n\n"
    "- Card payments go back to the same card.\n"
    "- PayPal payments go back to your PayPal account.\n"
    "- Gift card amounts are returned to that gift card.\n\n"
    "We can't refund to a different account, and never in cash.",
    Citation("Refunds", "refunds.md"),
    0.5,
    heading="Refunds > How the refund is paid",
)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("costs **$5.95** today", "costs $5.95 today"),
        ("a *big* deal and __bold__", "a big deal and bold"),
        ("see [our page](https://shop.example/help)", "see our page (https://shop.example/help)"),
        ("see [the FAQ](faq.md)", "see the FAQ"),
        ("<b>Shipped</b> &amp; done", "Shipped & done"),
        ("use `Account > Orders`", "use Account > Orders"),
        ("## Heading", "Heading"),
        ("snake_case_word and 2*3*4", "snake_case_word and 2*3*4"),  # not emphasis
        ("<EMAIL_ADDRESS> stays", "<EMAIL_ADDRESS> stays"),  # a privacy label is no tag
    ],
)
def test_strip_markup_leaves_the_words_when_markup_is_present(text: str, plain: str) -> None:
    assert strip_markup(text) == plain


def test_units_are_sentences_items_and_whole_lists_without_the_context_line() -> None:
    units = units_of([SHIPPING, REFUNDS])
    texts = [u.text for u in units]
    assert texts[:3] == [
        "Standard shipping takes 3-5 business days and costs $5.95.",
        "It is free on orders over $50.",
        "Standard is the default option at checkout.",
    ]
    assert "Shipping options — Standard shipping" not in " ".join(texts)
    whole = [u for u in units if u.kind == "list"]
    assert len(whole) == 1 and whole[0].text.startswith("Refunds are paid as follows:\n- Card")
    assert {u.article for u in units} == {0, 1}
    assert units[0].citation == Citation("Shipping options", "shipping.md")


def test_units_of_overlapping_chunks_appear_once() -> None:
    overlap = Passage(SHIPPING.text, SHIPPING.citation, 0.9, heading=SHIPPING.heading)
    assert len(units_of([SHIPPING, overlap])) == len(units_of([SHIPPING]))


def _scored(units: list, scores: list[float]) -> list[Scored]:  # type: ignore[type-arg]
    return sorted(
        (Scored(u, s, s, 0.0) for u, s in zip(units, scores, strict=True)), key=lambda s: -s.score
    )


def test_choose_quotes_the_whole_paragraph_of_the_best_sentence() -> None:
    units = units_of([SHIPPING, REFUNDS])
    scores = [0.9, 0.2, 0.1] + [0.0] * (len(units) - 3)
    choice = choose([_scored(units, scores)], units, threshold=0.5)
    assert compose(choice.units) == (
        "Standard shipping takes 3-5 business days and costs $5.95. It is free on orders over "
        "$50. Standard is the default option at checkout."
    )
    assert choice.best == 0.9


CANCEL = Passage(
    "Cancelling — The 1-hour window\n\n"
    "Orders can be cancelled within 1 hour of being placed.\n\n"
    "To do it, go to Account > Orders and choose Cancel order. A cancelled order is never "
    "charged.\n\n"
    "Once the hour has passed, the order can no longer be cancelled.",
    Citation("Cancelling", "cancel.md"),
    1.0,
)


@pytest.mark.parametrize(
    ("best", "quoted"),
    [
        # "To do it" points back: the paragraph it points at comes with it
        ("To do it", "Orders can be cancelled within 1 hour of being placed. To do it, go to "
         "Account > Orders and choose Cancel order. A cancelled order is never charged."),
        ("Once the hour", "Once the hour has passed, the order can no longer be cancelled."),
        ("Orders can be", "Orders can be cancelled within 1 hour of being placed."),
    ],
)  # fmt: skip
def test_a_paragraph_that_points_back_is_quoted_with_the_one_before(best: str, quoted: str) -> None:
    units = units_of([CANCEL])
    scores = [0.9 if u.text.startswith(best) else 0.0 for u in units]
    choice = choose([_scored(units, scores)], units, threshold=0.5)
    assert " ".join(compose(choice.units).split()) == quoted


def test_choose_quotes_a_whole_list_when_one_item_answers() -> None:
    units = units_of([SHIPPING, REFUNDS])
    scores = [0.8 if "Gift card" in u.text and u.kind == "item" else 0.0 for u in units]
    text = compose(choose([_scored(units, scores)], units, threshold=0.5).units)
    assert text.startswith("Refunds are paid as follows:\n- Card payments")
    assert text.endswith("- Gift card amounts are returned to that gift card.")


def test_choose_declines_when_no_sentence_reaches_the_threshold() -> None:
    units = units_of([SHIPPING])
    choice = choose([_scored(units, [0.4] * len(units))], units, threshold=0.5)
    assert choice.units == () and choice.best == pytest.approx(0.4)


def test_choose_leaves_out_a_second_paragraph_past_the_length_limit() -> None:
    units = units_of([SHIPPING, REFUNDS])
    scores = [0.9] + [0.0] * (len(units) - 2) + [0.88]  # the last refund sentence, a near tie
    both = choose([_scored(units, scores)], units, threshold=0.5, max_chars=700)
    one = choose([_scored(units, scores)], units, threshold=0.5, max_chars=150)
    assert "never in cash" in compose(both.units)
    assert "never in cash" not in compose(one.units) and "$5.95" in compose(one.units)


@pytest.mark.parametrize(
    ("message", "asks"),
    [
        ("how much is shipping and how long does it take", 1),
        ("Which payment methods do you accept? Please list them.", 2),
        ("I live in Toronto. Can you ship to me? What does it cost?", 2),
        ("my tent arrived broken", 1),
    ],
)
def test_question_parts_split_separate_asks_and_keep_the_situation(message: str, asks: int) -> None:
    parts = question_parts(message)
    assert len(parts) == asks
    if "Toronto" in message:
        assert all(part.startswith("I live in Toronto.") for part in parts)


def test_a_quoted_answer_is_only_ever_the_passages_own_sentences() -> None:
    """Whatever the question, every sentence shown comes word for word from a passage."""
    answerer = QuoteAnswerer(HashingEmbedder(), min_score=0.0)
    questions = ["shipping cost", "refund to gift card?", "cash", "how long? and how much?"]
    for question in questions:
        choice = answerer.answer(question, [SHIPPING, REFUNDS])
        assert choice.units
        assert is_quoted(compose(choice.units), [SHIPPING, REFUNDS])
    rng = random.Random(7)
    units = units_of([SHIPPING, REFUNDS])
    for size in range(1, 5):
        for picked in itertools.islice(itertools.combinations(units, size), 40):
            assert is_quoted(compose(picked), [SHIPPING, REFUNDS])
    # and anything else is refused
    for text in [
        "Standard shipping takes 1-2 business days and costs $5.95.",
        "Standard shipping takes 3-5 business days and costs $5.95. Express is free.",
        "- Cash payments go back to you.",
        "It is free on orders over $50",  # a sentence cut short is not the sentence
    ]:
        assert not is_quoted(text, [SHIPPING, REFUNDS]), text
    word = rng.choice(units[0].text.split())
    assert not is_quoted(units[0].text.replace(word, word + "x", 1), [SHIPPING])


def test_cite_answer_names_only_the_articles_a_written_answer_comes_from() -> None:
    answer = "Standard shipping costs $5.95 and takes 3-5 business days. Have a nice day!"
    assert cite_answer(answer, [REFUNDS, SHIPPING]) == (SHIPPING.citation,)
    assert cite_answer("Hello there!", [REFUNDS, SHIPPING]) == ()


@pytest.mark.parametrize(
    ("sentence", "echo"),
    [
        ("Can you ship to me, and what will it cost?", True),
        ("You can get a refund on a damaged tent.", True),
        ("Faulty items are refunded in full within 5 business days.", False),
        ("Thanks!", False),
    ],
)
def test_is_echo_when_the_answer_only_repeats_the_question(sentence: str, echo: bool) -> None:
    question = "I live in Toronto. Can you ship to me, and what will it cost? refund damaged tent"
    assert is_echo(sentence, question) is echo


@pytest.mark.parametrize(
    ("typed", "fixed"),
    [
        ("forgot my pasword", "forgot my password"),
        ("how much is shiping", "how much is shipping"),
        ("when do i recieve it", "when do i receive it"),
        ("express shipping", "express shipping"),  # known words stay
        ("ship or shop", "ship or shop"),  # dictionary words are never "corrected"
        ("xqzt", "xqzt"),  # nothing near: unchanged
    ],
)
def test_spelling_is_fixed_against_the_help_centers_words(typed: str, fixed: str) -> None:
    fixer = SpellingFixer(["password", "shipping", "receive", "express", "refund"])
    assert fixer.fix(typed) == fixed


def test_spelling_leaves_a_word_with_two_equally_likely_corrections() -> None:
    fixer = SpellingFixer(["parcel", "parcels"], {"parcel": 3, "parcels": 3})
    assert fixer.correct("parcell") == "parcell"
    assert (
        SpellingFixer(["parcel", "parcels"], {"parcel": 9, "parcels": 1}).correct("parcell")
        == "parcel"
    )


@pytest.mark.parametrize(
    ("a", "b", "near"),
    [("pasword", "password", True), ("recieve", "receive", True), ("refnud", "refund", True),
     ("ship", "shop", True), ("ship", "shipping", False), ("abc", "abc", False)],
)  # fmt: skip
def test_one_edit_apart(a: str, b: str, near: bool) -> None:
    assert one_edit_apart(a, b) is near


ACCOUNT = Passage(
    "Password reset\n\nThe password reset link is valid for 24 hours.",
    Citation("Password reset", "password.md"),
    1.0,
)
PRIVACY = Passage(
    "Your data\n\nThe data download link is valid for 7 days.",
    Citation("Your data", "privacy.md"),
    1.0,
)


def test_a_followup_is_scored_with_its_conversation_and_its_own_words_first() -> None:
    answerer = QuoteAnswerer(HashingEmbedder(), min_score=0.0)
    passages = [PRIVACY, ACCOUNT]
    about_password = "I forgot my password, can you reset it?"
    # Said after a question about the password, "the link" is the reset link ...
    vague = "how long is the link good for"
    followed = answerer.answer(vague, passages, query=f"{about_password} {vague}")
    assert compose(followed.units) == "The password reset link is valid for 24 hours."
    # ... but a follow-up that names its subject keeps it, whatever came before.
    named = "how long is the data download link good for"
    own = answerer.answer(named, passages, query=f"{about_password} {named}")
    assert compose(own.units) == "The data download link is valid for 7 days."
    # The conversation's articles (the last answer's) are preferred.
    for topic, said in ((ACCOUNT, "24 hours"), (PRIVACY, "7 days")):
        chosen = answerer.answer(vague, passages, topic=[topic.citation.source])
        assert citations_of(chosen.units) == (topic.citation,), said
        assert said in compose(chosen.units)


def test_an_articles_lede_scores_below_its_sections() -> None:
    """The lede above an article's first heading sums the article up; it answers nothing a
    section does not, so it scores a little less. An article without headings keeps it."""
    returns = Citation("Returns policy", "returns.md")
    lede = Passage("Returns policy\n\nIf something isn't right, you can send it back.",
                   returns, 1.0, heading="Returns policy")  # fmt: skip
    section = Passage("Returns policy — What you can return\n\nUnused items can be sent back.",
                      returns, 1.0, heading="Returns policy > What you can return")  # fmt: skip
    flat = Passage("Gift cards\n\nGift cards never expire.", Citation("Gift cards", "gift.md"),
                   1.0, heading="Gift cards")  # fmt: skip
    units = units_of([lede, section, flat])
    question = "can i send it back"

    def scores(penalty: float) -> dict[str, float]:
        scorer = QuoteScorer(HashingEmbedder(), lede_penalty=penalty)
        return {s.unit.text: s.score for s in scorer.score(question, units)}

    plain, penalised = scores(0.0), scores(0.05)
    assert penalised["If something isn't right, you can send it back."] == pytest.approx(
        plain["If something isn't right, you can send it back."] - 0.05
    )
    assert penalised["Unused items can be sent back."] == plain["Unused items can be sent back."]
    assert penalised["Gift cards never expire."] == plain["Gift cards never expire."]
