"""The customer's language, with the real fastText model (bot/language.py)."""

from __future__ import annotations

import pytest

from bot.language import LanguageDetector, only_in
from bot.manager import ConversationManager
from bot.types import InboundMessage, ReplyEvent

_SENT = iter(range(1, 1000))


async def _run(manager: ConversationManager, text: str, cid: str | None = None) -> list[ReplyEvent]:
    message = InboundMessage(text, "test", cid, f"lang{next(_SENT)}")
    return [event async for event in manager.respond(message)]


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    found = LanguageDetector("en")
    found.warm_up()
    return found


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Combien de temps prend la livraison standard ?", "fr"),
        ("Wie lange dauert der Versand nach Österreich?", "de"),
        ("¿Cuánto tarda el reembolso en llegar a mi tarjeta?", "es"),
        ("Posso restituire un articolo dopo 30 giorni?", "it"),
        ("Quanto tempo demora o reembolso do meu pedido?", "pt"),
        ("How long does standard shipping take?", "en"),
        ("my order NW-55102 hasnt arrived yet wtf", "en"),
        ("Can I pay with PayPal in Zürich?", "en"),
    ],
)
def test_messages_are_told_apart(detector: LanguageDetector, text: str, language: str) -> None:
    assert detector.detect(text)[0] == language


def test_too_short_to_tell_stays_with_the_help_center(detector: LanguageDetector) -> None:
    for text in ("merci", "hola", "NW-55102", "", "?"):
        assert detector.detect(text) == ("en", 0.0)


def test_the_customer_is_told_in_their_language() -> None:
    assert only_in("en", "fr").startswith("Je ne peux répondre qu'en anglais")
    assert "auf Englisch" in only_in("en", "de")
    assert "en inglés" in only_in("en", "es")
    assert only_in("en", "sv").startswith("I can only answer in English")
    assert "allemand" in only_in("de", "fr")


async def test_a_question_in_another_language_is_answered_honestly_in_it() -> None:
    from bot.llm.base import ScriptedModel
    from bot.types import Message
    from tests.unit.test_manager import _manager

    manager = _manager(ScriptedModel([["Refunds take ", "5 days."]] * 3))
    first = await _run(manager, "Combien de temps faut-il pour être remboursé ?")
    final = first[-1]
    assert isinstance(final, Message)
    assert final.text.startswith("Je ne peux répondre qu'en anglais") and final.kind == "no_answer"
    assert not final.citations and final.handoff == ""
    # In English the same customer is answered.
    english = await _run(manager, "How long do refunds take?", final.conversation_id)
    assert isinstance(english[-1], Message) and "5 days" in english[-1].text
    # Two in a row in another language: the conversation goes to a person.
    again = await _run(manager, "Wie lange dauert die Rückerstattung?", final.conversation_id)
    more = await _run(manager, "Und wie lange dauert der Versand?", final.conversation_id)
    assert isinstance(again[-1], Message) and again[-1].text.startswith("Ich kann im Moment")
    assert isinstance(more[-1], Message) and more[-1].handoff


async def test_detection_off_takes_every_message_as_written() -> None:
    from bot.llm.base import ScriptedModel
    from bot.types import Message
    from tests.unit.test_manager import _manager

    manager = _manager(
        ScriptedModel([["Refunds take ", "5 days."]]), answers={"detect_language": False}
    )
    out = await _run(manager, "Combien de temps faut-il pour être remboursé ?")
    assert isinstance(out[-1], Message) and not out[-1].text.startswith("Je ne peux")
