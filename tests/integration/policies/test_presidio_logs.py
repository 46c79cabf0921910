"""No log line carries the personal data presidio found, at any log level."""

from __future__ import annotations

import logging

import pytest

from policies.pii import PresidioRedactor

pytestmark = pytest.mark.integration


def test_debug_logging_never_shows_the_values_when_presidio_redacts(
    presidio: PresidioRedactor, caplog: pytest.LogCaptureFixture
) -> None:
    # Presidio logs the words around a match at DEBUG ("Context list is: ... 4111 ...").
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        redaction = presidio.redact(
            "I want my credit card 4111 1111 1111 1111 limit raised, call me on 212-555-0182"
        )
    assert "<CREDIT_CARD>" in redaction.text and "<PHONE_NUMBER>" in redaction.text
    for value in ("4111", "555-0182"):
        assert value not in caplog.text
    # The enhancer above logs no context itself; presidio's others would at DEBUG, so its
    # loggers must stay above it whatever the root level.
    for name in ("presidio-analyzer", "presidio-anonymizer"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
