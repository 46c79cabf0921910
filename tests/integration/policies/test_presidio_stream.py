"""The streaming output filter with the real PresidioRedactor on a realistic streamed answer."""

from __future__ import annotations

import re

import pytest

from policies.engine import PolicyEngine
from policies.pii import PresidioRedactor
from policies.schema import PolicyFile
from policies.stream import StreamingRedactor

pytestmark = pytest.mark.integration

ANSWER = (
    "Thanks for waiting, Maria Garcia! I found your order 55123. "
    "The refund of $49.90 went back to the card 4111 1111 1111 1111 on May 3.\n"
    "If it has not arrived, write to billing@northwind.example.com or call (212) 555-0182, "
    "and mention the IBAN GB82 WEST 1234 5698 7654 32 you gave us. "
    "Returns are accepted within 30 days of delivery."
)
SECRETS = [
    "Maria", "Garcia", "4111", "1111", "billing", "northwind", "212", "555-0182", "GB82", "WEST",
    "5698", "7654",
]  # fmt: skip


def tokens(text: str) -> list[str]:
    # Model-like pieces: short sub-words with their leading space, digits in small groups.
    return re.findall(r"\s?[A-Za-z]{1,4}|\s?\d{1,3}|\s?[^\w\s]|\s+", text)


@pytest.mark.parametrize("max_hold", [80, 400])
@pytest.mark.parametrize("chunking", ["tokens", "chars"])
def test_streamed_answer_never_shows_pii_when_redacted_by_presidio(
    presidio: PresidioRedactor, max_hold: int, chunking: str
) -> None:
    pieces = tokens(ANSWER) if chunking == "tokens" else list(ANSWER)
    assert "".join(pieces) == ANSWER
    output = StreamingRedactor(presidio, max_hold)
    shown = [output.feed(piece) for piece in pieces]
    released_early = "".join(shown)
    shown.append(output.flush())
    full = "".join(shown)
    for secret in SECRETS:
        assert secret not in full, (secret, shown)
    for placeholder in (
        "<PERSON>",
        "<CREDIT_CARD>",
        "<EMAIL_ADDRESS>",
        "<PHONE_NUMBER>",
        "<IBAN_CODE>",
    ):
        assert placeholder in full
    assert "order 55123" in full and "within 30 days" in full
    assert released_early.startswith(
        "Thanks for waiting, <PERSON>! "
    )  # streamed, not all at the end


def test_streamed_answer_matches_whole_redaction_when_cut_at_sentences(
    presidio: PresidioRedactor,
) -> None:
    output = StreamingRedactor(presidio, 400)
    streamed = "".join(output.feed(piece) for piece in tokens(ANSWER)) + output.flush()
    assert streamed == presidio.redact(ANSWER).text


async def test_engine_streams_redacted_answer_when_fed_from_event_loop(
    presidio: PresidioRedactor,
) -> None:
    engine = PolicyEngine(PolicyFile(version=1), presidio)
    engine.warm_up()  # already warm: returns at once
    output = engine.output_filter()
    try:
        shown = [await engine.feed(output, piece) for piece in tokens(ANSWER)]
        shown.append(await engine.flush(output))
    finally:
        engine.close()
    assert "".join(shown) == presidio.redact(ANSWER).text
    assert sum(1 for piece in shown if piece) >= 4  # released sentence by sentence
