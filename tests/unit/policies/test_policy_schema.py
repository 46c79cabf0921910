"""The policy file schema: the bundled default, valid variants, and line-accurate errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from policies.schema import (
    DEFAULT_ENTITIES,
    KNOWN_ENTITY_TYPES,
    PolicyFile,
    PolicyFileError,
    default_policy_path,
    load_policy,
    parse_policy,
    policy_json_schema,
)
from tests.support import assert_policy_error

VALID = """\
version: 1
pii:
  entities: [PERSON, EMAIL_ADDRESS]
  score_threshold: 0.6
output:
  max_hold_chars: 200
"""


def test_default_file_matches_schema_defaults_when_loaded() -> None:
    # The documented file and the code's defaults must never drift apart; the one
    # difference is the file's example topics (the code declines no topic by default).
    shipped = load_policy(default_policy_path())
    assert [topic.name for topic in shipped.topics.blocked] == ["legal_advice", "medical_advice"]
    assert shipped.model_copy(update={"topics": PolicyFile(version=1).topics}) == PolicyFile(
        version=1
    )
    assert tuple(PolicyFile(version=1).pii.entities) == DEFAULT_ENTITIES


def test_default_entities_are_known_when_validated() -> None:
    assert set(DEFAULT_ENTITIES) <= KNOWN_ENTITY_TYPES


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("version: 1\n", lambda p: p.pii.enabled and p.output.max_hold_chars == 400),
        (VALID, lambda p: p.pii.entities == ["PERSON", "EMAIL_ADDRESS"]),
        (VALID, lambda p: p.pii.score_threshold == 0.6 and p.output.max_hold_chars == 200),
        ("version: 1\npii: {score_threshold: 0}\n", lambda p: p.pii.score_threshold == 0),
        ("version: 1\npii: {score_threshold: 1}\n", lambda p: p.pii.score_threshold == 1),
        ("version: 1\npii: {enabled: false}\n", lambda p: not p.pii.enabled),
        (
            "version: 1\npii: {replacement: '[{entity_type} removed]'}\n",
            lambda p: p.pii.replacement == "[{entity_type} removed]",
        ),
        ("version: 1\npii: {entities: [PERSON, PERSON]}\n", lambda p: p.pii.entities == ["PERSON"]),
        ("version: 1\nmessages: {blocked: No.}\n", lambda p: p.messages.blocked == "No."),
        ("version: 1\npii: {operator: mask}\n", lambda p: p.pii.operator == "mask"),
        (
            "version: 1\npii: {operator: hash, hash_salt: s3cret}\n",
            lambda p: (p.pii.operator, p.pii.salt()) == ("hash", "s3cret"),
        ),
        ("version: 1\npii: {recognizers: []}\n", lambda p: p.pii.recognizers == []),
        (
            "version: 1\npii:\n  entities: [PERSON, ORDER_ID]\n  recognizers:\n"
            "    - {name: orders, entity_type: ORDER_ID, patterns: [{regex: 'ORD-\\d+'}]}\n",
            lambda p: (
                p.pii.entities == ["PERSON", "ORDER_ID"]
                and p.pii.recognizers[0].patterns[0].score == 0.5
                and p.pii.recognizers[0].checksum == "none"
            ),
        ),
        (
            # presidio types a file leaves out just switch their default recognizers off
            "version: 1\npii: {entities: [EMAIL_ADDRESS]}\n",
            lambda p: (
                [s.name for s in p.pii.recognizers]
                == ["any_card", "phone_digit_groups", "person_after_cue"]
            ),
        ),
    ],
)
def test_policy_parses_when_valid(text: str, check: object) -> None:
    policy = parse_policy(text, "ok.yaml")
    assert callable(check) and check(policy)


ERRORS = [
    # (file text, line, location, a phrase of the reason)
    ("version: 1\npii:\n  enabled: true\n  colour: red\n", 4, "pii.colour", "unknown key"),
    ("version: 1\nfoo: 1\n", 2, "foo", "unknown key"),
    ("version: 1\npii:\n  score_threshold: high\n", 3, "pii.score_threshold", "valid number"),
    ("version: 1\noutput:\n  max_hold_chars: [1]\n", 3, "output.max_hold_chars", "valid integer"),
    ("version: 1\npii:\n  score_threshold: 1.5\n", 3, "pii.score_threshold", "less than or equal"),
    ("version: 1\npii: yes\n", 2, "pii", "expected keys indented"),
    (
        "version: 1\npii:\n  entities:\n    - PERSON\n    - EMAIL\n",
        5,
        "pii.entities[1]",
        "did you mean EMAIL_ADDRESS?",
    ),
    ("version: 1\npii:\n  entities: [PERSN]\n", 3, "pii.entities[0]", "did you mean PERSON?"),
    ("version: 1\npii:\n  entities: [WIDGET]\n", 3, "pii.entities[0]", "known: CREDIT_CARD"),
    ("version: 1\npii:\n  entities: []\n", 3, "pii.entities", "at least 1 item"),
    ("pii:\n  enabled: true\n", 1, "version", "missing required key"),
    ("# comment\n\npii:\n  enabled: true\n", 3, "version", "missing required key"),
    ("version: 2\npii: {}\n", 1, "version", "supported versions: 1"),
    ("version: '1'\n", 1, "version", "supported versions: 1"),
    ("# policy\nversion: 1\npii:\n  entities: [PERSON\n", 4, "(syntax)", "invalid YAML"),
    ("version: 1\nmessages:\n  fallback: 'unclosed\n", 3, "(syntax)", "invalid YAML"),
    ("version: 1\npii: {enabled: true\noutput: {}\n", 3, "(syntax)", "started on line 2"),
    ("version: 1\npii:\n\tenabled: true\n", 3, "(syntax)", "invalid YAML"),
    ("", 1, "(file)", "empty"),
    ("# only a comment\n", 1, "(file)", "empty"),
    ("- version: 1\n", 1, "(top level)", "got a list"),
    ("version: 1\npii: {}\npii: {}\n", 3, "pii", "duplicate key"),
    ("version: 1\npii:\n  replacement: '[removed]'\n", 3, "pii.replacement", "{entity_type}"),
    ("version: 1\npii:\n  replacement: '{entity_type} {x}'\n", 3, "pii.replacement", "braces"),
    ("version: 1\noutput:\n  max_hold_chars: 10\n", 3, "output.max_hold_chars", "80"),
    ("version: 1\nmessages:\n  fallback: '  '\n", 3, "messages.fallback", "at least 1"),
    ("version: 1\npii:\n  language: English\n", 3, "pii.language", "pattern"),
    (
        "version: 1\npii:\n  recognizers:\n    - name: ids\n      entity_type: PERSON\n"
        "      patterns:\n        - regex: '[a-z'\n",
        7,
        "pii.recognizers[0].patterns[0].regex",
        "invalid regular expression",
    ),
    (
        "version: 1\npii:\n  recognizers:\n    - name: ids\n      entity_type: PERSON\n"
        "      patterns: [{regex: 'x'}]\n      checksum: md5\n",
        7,
        "pii.recognizers[0].checksum",
        "'luhn', 'iban' or 'none'",
    ),
    (
        "version: 1\npii:\n  operator: blur\n",
        3,
        "pii.operator",
        "'replace', 'mask', 'hash' or 'pseudonym'",
    ),
]


@pytest.mark.parametrize(("text", "line", "location", "phrase"), ERRORS)
def test_error_names_line_and_location_when_file_is_invalid(
    text: str, line: int, location: str, phrase: str
) -> None:
    assert_policy_error(text, line, location, phrase)


def test_every_error_is_listed_one_per_line_when_file_has_several() -> None:
    text = "version: 1\npii:\n  entities: [PERSON, EMAIL]\n  colour: red\noutput: {max: 1}\n"
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "bad.yaml")
    assert [(line, where) for line, where, _ in caught.value.errors] == [
        (3, "pii.entities[1]"),
        (4, "pii.colour"),
        (5, "output.max"),
    ]
    lines = str(caught.value).splitlines()
    assert len(lines) == 3 and all(line.startswith("bad.yaml:") for line in lines)


def test_only_the_version_is_reported_when_version_is_unsupported() -> None:
    # A file written for another format would otherwise drown in unknown-key errors.
    with pytest.raises(PolicyFileError) as caught:
        parse_policy("version: 3\nrules: []\nextra: 1\n", "future.yaml")
    assert caught.value.errors == [(1, "version", "unsupported version 3; supported versions: 1")]


def test_error_is_a_config_error_when_raised() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy("version: 1\nfoo: 1\n", "bad.yaml")
    assert caught.value.code == "policy_file_error"


def test_load_names_the_path_when_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\npii:\n  entities: [EMAIL]\n", encoding="utf-8")
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}:3: pii.entities[0]: ")


def test_load_refuses_the_file_when_it_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nmessages: {fallback: 'Désolé'}\n".encode("latin-1"))
    with pytest.raises(PolicyFileError, match="not UTF-8"):
        load_policy(path)


def test_load_raises_oserror_when_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_policy(tmp_path / "missing.yaml")


def test_json_schema_forbids_unknown_keys_when_generated() -> None:
    schema = policy_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {
        "version", "pii", "injection", "toxicity", "topics", "limits", "links", "handoff",
        "stages", "output", "grounding", "messages", "channels", "scrub", "harm", "claims",
    }  # fmt: skip
    assert schema["required"] == ["version"]
