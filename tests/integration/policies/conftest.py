"""One warmed-up PresidioRedactor for the whole session: warm-up takes seconds."""

from __future__ import annotations

import logging
import time

import pytest

from policies.pii import PresidioRedactor
from policies.schema import default_policy_path, load_policy

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def presidio() -> PresidioRedactor:
    """The real redactor on the bundled default policy, warmed up once."""
    redactor = PresidioRedactor(load_policy(default_policy_path()).pii)
    started = time.perf_counter()
    redactor.warm_up()
    log.info("presidio warm-up took %.2fs", time.perf_counter() - started)
    return redactor
