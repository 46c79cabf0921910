"""The eval suite file, the expectation checks, the runner and the JUnit report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bot.evals import (
    ConversationResult,
    Expect,
    Observed,
    SuiteFileError,
    SuiteResult,
    TurnResult,
    check,
    junit_xml,
    parse_suite,
    render_report,
    run_suite,
)
from bot.files import write_atomically
from bot.manager import ConversationManager
from bot.sessions import InMemorySessionStore
from bot.settings import Settings
from bot.types import Citation, Passage
from knowledge.embeddings import HashingEmbedder
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.schema import parse_policy
from tests.processes import ScriptedAnswers
from tests.support import FixedRetriever

ROOT = Path(__file__).resolve().parents[2]
EXPECT = "conversations[0].turns[0].expect."

GOOD = """\
version: 1
conversations:
  - name: returns
    turns:
      - user: How long do I have to return boots?
        expect:
          contains: 30 days
          cites: [returns-policy.md]
          max_seconds: 5
"""


def _errors(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(SuiteFileError) as caught:
        parse_suite(text, "suite.yaml")
    return caught.value.errors


def test_suite_parses_and_lists_single_strings_when_valid() -> None:
    suite = parse_suite(GOOD)
    turn = suite.conversations[0].turns[0]
    assert suite.conversations[0].channel == "eval"
    assert turn.expect.contains == ["30 days"] and turn.expect.cites == ["returns-policy.md"]


def test_demo_suite_is_valid_when_shipped() -> None:
    suite = parse_suite((ROOT / "demo" / "eval" / "suite.yaml").read_text())
    assert len(suite.conversations) >= 5


@pytest.mark.parametrize(
    ("text", "line", "location", "phrase"),
    [  # EXPECT: the first turn's expectations
        (GOOD.replace("contains:", "contians:"), 7, EXPECT + "contians", "unknown key"),
        (GOOD.replace("5", "soon"), 9, EXPECT + "max_seconds", "valid number"),
        (GOOD.replace("max_seconds: 5", "abstains: sure"), 9, EXPECT + "abstains", "valid boolean"),
        (GOOD.replace("user:", "usr:"), 5, "conversations[0].turns[0].user", "missing required"),
        (GOOD.replace("version: 1", "version: 2"), 1, "version", "1"),
        (GOOD.replace("max_seconds: 5", "redacts: email"), 9, EXPECT + "redacts[0]", "pattern"),
        (GOOD + GOOD.split("conversations:\n")[1], 3, "conversations", "named 'returns'"),
        ("version: 1\nconversations: [\n", 3, "(syntax)", "invalid YAML"),
    ],
)  # fmt: skip
def test_bad_suite_names_line_and_reason_when_loaded(
    text: str, line: int, location: str, phrase: str
) -> None:
    errors = _errors(text)
    assert (line, location) in [(found, where) for found, where, _ in errors], errors
    reason = next(reason for _, where, reason in errors if where == location)
    assert phrase in reason, reason


def test_bad_suite_error_prints_file_and_line_when_shown() -> None:
    with pytest.raises(SuiteFileError) as caught:
        parse_suite(GOOD.replace("contains:", "contians:"), "suite.yaml")
    assert str(caught.value).startswith("suite.yaml:7: conversations[0].turns[0].expect.contians")


def test_empty_suite_is_refused_when_loaded() -> None:
    assert _errors("")[0][2].startswith("the file is empty")
    assert "at least 1" in _errors("version: 1\nconversations: []\n")[0][2]


RETURNS = Citation("Returns policy", "returns-policy.md")


def _seen(**fields: object) -> Observed:
    base: dict[str, object] = {"text": "You have 30 days to return it.", "seconds": 1.0}
    return Observed(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expect", "seen", "failure"),
    [
        ({"contains": ["30 DAYS"]}, {}, None),
        ({"contains": ["30 days", "refund"]}, {}, "expected 'refund' in the answer; got 'You"),
        ({"contains_any": ["sixty", "30 days"]}, {}, None),
        ({"contains_any": ["sixty", "ninety"]}, {}, "expected one of ['sixty', 'ninety']"),
        ({"not_contains": ["lasagna"]}, {}, None),
        ({"not_contains": ["days"]}, {}, "expected no 'days' in the answer"),
        ({"cites": ["returns-policy.md", "Returns Policy"]}, {"citations": (RETURNS,)}, None),
        ({"cites": ["refunds.md"]}, {"citations": (RETURNS,)}, "cited ['returns-policy.md']"),
        ({"cites": ["refunds.md"]}, {}, "cited nothing"),
        ({"abstains": True}, {"kind": "no_answer"}, None),
        ({"abstains": True}, {}, "to say it does not know; got kind 'answer'"),
        ({"abstains": False}, {"kind": "no_answer"}, "abstains: expected the turn not to say"),
        ({"hands_off": True}, {"handoff": "asked for a person"}, None),
        ({"hands_off": True}, {}, "hands_off: expected the turn to hand off"),
        ({"hands_off": False}, {"handoff": "2 messages blocked"}, "handoff '2 messages blocked'"),
        ({"blocked": True}, {"kind": "blocked"}, None),
        ({"blocked": True}, {}, "blocked: expected the turn to be blocked"),
        ({"kind": "fallback"}, {"kind": "fallback"}, None),
        ({"kind": "fallback"}, {}, "kind: expected 'fallback'; got ''"),
        ({"max_seconds": 2}, {}, None),
        ({"max_seconds": 0.5}, {}, "took 1.0s; expected at most 0.5s"),
        ({"contains": ["days"]}, {"error": "busy: try again"}, "the turn failed: busy: try again"),
    ],
)  # fmt: skip
def test_check_reports_expected_and_actual_when_an_expectation_breaks(
    expect: dict[str, object], seen: dict[str, object], failure: str | None
) -> None:
    failures = check(Expect.model_validate(expect), "a question", _seen(**seen))
    if failure is None:
        assert failures == []
    else:
        assert len(failures) == 1 and failure in failures[0], failures


USER = "My email is jane@example.com, where is my order?"
STORED = "My email is <EMAIL_ADDRESS>, where is my order?"


@pytest.mark.parametrize(
    ("stored", "answer", "failure"),
    [
        ("My email is <EMAIL_ADDRESS>, where is my order?", "", None),
        ("My email is <EMAIL_ADDRESS_3f9a0c>, where is my order?", "", None),
        ("My email is <EMAIL_ADDRESS:3f9a0c41d2e7>, where is my order?", "", None),
        (USER, "", "expected <EMAIL_ADDRESS> in the stored message; it shows no placeholder"),
        ("My email is <PERSON>, where is my order?", "", "it shows <PERSON>"),
        (STORED, "Hi jane@example.com!", "the answer repeats the raw EMAIL_ADDRESS value"),
    ],
)  # fmt: skip
def test_redacts_checks_placeholder_and_raw_value_when_expected(
    stored: str, answer: str, failure: str | None
) -> None:
    expect = Expect.model_validate({"redacts": "EMAIL_ADDRESS"})
    failures = check(expect, USER, _seen(text=answer, stored_user=stored))
    if failure is None:
        assert failures == []
    else:
        assert len(failures) == 1 and failure in failures[0], failures
        assert "jane@example.com" not in failures[0]  # raw values never reach a report


def test_redacts_fails_when_the_raw_value_is_still_stored_beside_the_placeholder() -> None:
    user = "jane@example.com or jane@example.com"
    stored = "<EMAIL_ADDRESS> or jane@example.com"
    failures = check(Expect(redacts=["EMAIL_ADDRESS"]), user, _seen(stored_user=stored))
    assert failures == [
        "redacts EMAIL_ADDRESS: a raw EMAIL_ADDRESS value is still in the stored message"
    ]


def _result() -> SuiteResult:
    ok = TurnResult(1, "How long?", Observed("30 days", seconds=0.25))
    bad = TurnResult(
        2, 'Is it <free> & "quick"?\x01', Observed("No \x00way", seconds=0.5), ["expected 'free'"]
    )
    return SuiteResult([ConversationResult("returns", [ok, bad])], seconds=0.75)


def test_junit_xml_is_well_formed_and_counts_failures_when_a_turn_fails(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "junit.xml"
    write_atomically(target, junit_xml(_result(), "demo"))
    root = ET.parse(target).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("demo", "2", "1")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["returns", "returns"]
    assert cases[0].get("name") == "turn 1: How long?" and cases[0].find("failure") is None
    assert cases[1].get("name") == 'turn 2: Is it <free> & "quick"?\ufffd'
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "expected 'free'"
    assert "answer: No \ufffdway" in (failure.text or "")
    assert [p.name for p in target.parent.iterdir()] == ["junit.xml"]  # no temp file left


def test_report_marks_each_turn_and_sums_up_when_rendered() -> None:
    result = _result()
    report = render_report(result)
    assert "returns\n  ✓ turn 1: How long? (0.2s)" in report
    assert "  ✗ turn 2: " in report and "      - expected 'free'" in report
    assert report.endswith("FAILED: 1/2 turns passed, 0/1 conversations, in 0.8s")
    assert result.exit_code == 1
    result.conversations[0].turns[1].failures.clear()
    assert result.exit_code == 0
    assert render_report(result).endswith("passed: 2/2 turns passed, 1/1 conversations, in 0.8s")


async def test_runner_keeps_one_conversation_and_checks_each_turn_when_run() -> None:
    # Honest fakes (regex redactor, fixed passages, scripted answers): the real pipeline runs
    # the same runner in tests/integration/test_eval_suite.py.
    settings = Settings(sessions={"rewrite_followups": "off", "summarize": False})
    policy = parse_policy("version: 1\nstages:\n  input: [pii, injection, handoff]\n")
    engine = PolicyEngine(policy, PatternRedactor(policy.pii), embedder=HashingEmbedder())
    engine.warm_up()
    passage = Passage("Return within 30 days.", RETURNS, 1.0)
    model = ScriptedAnswers({"return": "You have 30 days.", "email": "Noted."}, delay_s=0)
    store = InMemorySessionStore(settings.sessions)
    manager = ConversationManager(settings, store, engine, FixedRetriever([passage]), model)
    suite = parse_suite(
        """\
version: 1
conversations:
  - name: one
    turns:
      - user: How long do I have to return boots?
        expect: {contains: 30 days, cites: returns-policy.md, kind: ""}
      - user: My email is jane@example.com
        expect: {redacts: EMAIL_ADDRESS, contains: refund}
"""
    )
    seen: list[tuple[str, int]] = []
    result = await run_suite(suite, manager, lambda name, turn: seen.append((name, turn.index)))
    first, second = result.turns
    assert seen == [("one", 1), ("one", 2)]
    assert first.passed, first.failures
    assert second.failures == ["expected 'refund' in the answer; got 'Noted.'"]
    assert second.observed.stored_user == "My email is <EMAIL_ADDRESS>"
    assert len(model.prompts) == 2 and len(model.prompts[1]) > len(model.prompts[0])  # history
    assert result.exit_code == 1
