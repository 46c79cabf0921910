"""The action stage with a scripted action client (the real server: tests/integration).

Intent bands, the slot form loop, confirmation, events applied all-or-nothing, the followup
loop guard, and the actions file's line-numbered errors.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.actions.client import ActionFailed
from bot.actions.engine import ActionEngine
from bot.actions.schema import ActionsFileError, example, parse_actions
from bot.sessions import InMemorySessionStore, Session
from bot.settings import SessionSettings
from knowledge.embeddings import HashingEmbedder
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.schema import default_policy_path, load_policy

CONFIG = {
    "server": {"url": "http://actions.test:5055"},
    "intents": [
        {
            "name": "order_status",
            "examples": ["where is my order", "track my order"],
            "threshold": 0.9,
            "confirm_above": 0.5,
            "description": "check an order",
            "slots": [{"name": "order_id", "pattern": r"\b(\d{5})\b", "prompt": "Order number?"}],
            "action": "action_status",
        },
        {
            "name": "cancel",
            "examples": ["cancel my order"],
            "slots": [{"name": "order_id", "pattern": r"\b(\d{5})\b", "prompt": "Which one?"}],
            "confirm": "Cancel {order_id}?",
            "action": "action_cancel",
        },
    ],
    "max_followups": 2,
}


class ScriptedClient:
    """Answers each action with its scripted result, or raises it."""

    def __init__(self, script: dict[str, Any]) -> None:
        self.script = script
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def run(self, action: str, tracker: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((action, json.loads(json.dumps(tracker))))  # as sent
        result = self.script[action]
        if isinstance(result, Exception):
            raise result
        return dict(result)

    async def close(self) -> None:
        return None


async def _engine(script: dict[str, Any]) -> tuple[ActionEngine, ScriptedClient, Session, Any]:
    store = InMemorySessionStore(SessionSettings())
    client = ScriptedClient(script)
    engine = ActionEngine(example(CONFIG), HashingEmbedder(), store, client)  # type: ignore[arg-type]
    engine.warm_up()
    session = await store.create("test")
    policies = PolicyEngine(load_policy(default_policy_path()), PatternRedactor())
    policies.warm_up()
    return engine, client, session, (store, policies)


async def _turn(engine: ActionEngine, parts: Any, session: Session, text: str) -> Any:
    store, policies = parts
    fresh = await store.get(session.id)
    return await engine.handle(fresh, text, "test", policies)


def _state(session: Session) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(session.meta.get("rasa", "{}"))
    return data


async def test_slot_question_then_action_with_the_tracker_it_expects() -> None:
    ok = {
        "events": [{"event": "slot", "name": "order_status", "value": "shipped"}],
        "responses": [
            {
                "text": "It shipped.",
                "buttons": [{"title": "Track it"}],
                "custom": {"card": {"owner": "jane@example.com", "n": 1}},
            }
        ],
    }
    engine, client, session, parts = await _engine({"action_status": ok})
    asked = await _turn(engine, parts, session, "where is my order")
    assert asked.text == "Order number?" and not asked.action
    done = await _turn(engine, parts, session, "it is 12345")
    assert done.text == "It shipped.\n- Track it" and done.action == "action_status"
    assert done.custom == [{"card": {"owner": "<EMAIL_ADDRESS>", "n": 1}}]  # redacted
    action, tracker = client.calls[-1]
    assert action == "action_status" and tracker["sender_id"] == session.id
    assert tracker["slots"] == {"order_id": "12345"}
    assert tracker["latest_message"]["intent"]["name"] == "order_status"
    assert [e["event"] for e in tracker["events"]] == ["user", "user", "slot"]
    state = _state(await parts[0].get(session.id))
    assert state["slots"] == {"order_id": "12345", "order_status": "shipped"}
    assert [e["event"] for e in state["events"]][-3:] == ["action", "slot", "bot"]


async def test_the_confirm_band_asks_did_you_mean() -> None:
    ok = {"events": [], "responses": [{"text": "Shipped."}]}
    engine, _, session, parts = await _engine({"action_status": ok})
    score = engine.match("where is my order 12345 please now")
    assert score is not None and 0.5 <= score[1] < 0.9
    asked = await _turn(engine, parts, session, "where is my order 12345 please now")
    assert asked.text == "Did you mean that you want to check an order? (yes/no)"
    done = await _turn(engine, parts, session, "yes")
    assert done.text == "Shipped."  # the order number came from the first message
    assert await _turn(engine, parts, session, "what is the weather") is None  # not an action


async def test_an_unclear_match_loses_to_a_help_center_answer() -> None:
    engine, _, session, (store, policies) = await _engine({})
    text = "where is my order 12345 please now"  # in the "Did you mean" band
    asked: list[str] = []

    async def answered(question: str) -> bool:
        asked.append(question)
        return True

    assert await engine.handle(session, text, "test", policies, answered) is None
    assert asked == [text]
    assert "pending" not in (await store.get(session.id)).meta.get("rasa", "")
    # a clear match still starts the intent, whatever the help center says
    clear = await engine.handle(session, "where is my order", "test", policies, answered)
    assert clear is not None and clear.text == "Order number?"


async def test_confirmation_no_means_nothing_runs() -> None:
    engine, client, session, parts = await _engine({"action_cancel": {"events": []}})
    asked = await _turn(engine, parts, session, "cancel my order 54321")
    assert asked.text == "Cancel 54321?"
    refused = await _turn(engine, parts, session, "no")
    assert refused.text == "Okay, I won't do that." and client.calls == []


async def test_a_failing_chain_changes_nothing() -> None:
    script = {
        "action_status": {
            "events": [
                {"event": "slot", "name": "x", "value": 1},
                {"event": "followup", "name": "action_next"},
            ],
            "responses": [{"text": "first"}],
        },
        "action_next": ActionFailed("action_next", "HTTP 500: boom", 500),
    }
    engine, client, session, parts = await _engine(script)
    await _turn(engine, parts, session, "where is my order")
    before = _state(await parts[0].get(session.id))
    reply = await _turn(engine, parts, session, "12345")
    assert reply.failed and "talk to a person" in reply.text
    after = _state(await parts[0].get(session.id))
    assert "x" not in after.get("slots", {}) and after.get("slots") == {"order_id": "12345"}
    assert [c[0] for c in client.calls] == ["action_status", "action_next"]
    assert before["slots"] == {}


async def test_followups_are_chained_with_a_loop_guard() -> None:
    loop = {"events": [{"event": "followup", "name": "action_status"}], "responses": []}
    engine, client, session, parts = await _engine({"action_status": loop})
    await _turn(engine, parts, session, "where is my order")
    reply = await _turn(engine, parts, session, "12345")
    assert reply.failed
    assert len(client.calls) == 3  # the first run and max_followups (2) more


async def test_events_pause_resume_restart_and_redacted_slots() -> None:
    script = {
        "action_status": {
            "events": [
                {"event": "slot", "name": "email", "value": "jane@example.com"},
                {"event": "pause"},
            ],
            "responses": [],
        },
        "action_cancel": {"events": [{"event": "restart"}], "responses": [{"text": "Reset."}]},
    }
    engine, _, session, parts = await _engine(script)
    await _turn(engine, parts, session, "where is my order")
    paused = await _turn(engine, parts, session, "12345")
    assert paused.handoff == "pause"
    state = _state(await parts[0].get(session.id))
    assert state["paused"] and state["slots"]["email"] == "<EMAIL_ADDRESS>"  # never stored raw
    await _turn(engine, parts, session, "cancel my order 12345")
    restarted = await _turn(engine, parts, session, "yes")
    assert restarted.text == "Reset."
    assert _state(await parts[0].get(session.id))["slots"] == {}


def test_the_actions_file_names_line_and_reason() -> None:
    text = (
        "version: 1\n"
        "server:\n"
        "  url: ftp://nope\n"
        "intents:\n"
        "  - name: x\n"
        "    examples: [a]\n"
        "    action: a\n"
        "    threshold: 0.5\n"
        "    confirm_above: 0.7\n"
        "    colour: red\n"
    )
    with pytest.raises(ActionsFileError) as caught:
        parse_actions(text, "actions.yaml")
    message = str(caught.value)
    assert "actions.yaml:3: server.url: must start with http:// or https://" in message
    assert "actions.yaml:10: intents[0].colour: unknown key" in message
    fixed = text.replace("ftp://nope", "http://actions:5055").replace("    colour: red\n", "")
    with pytest.raises(ActionsFileError) as bands:
        parse_actions(fixed, "actions.yaml")
    assert "intents[0]: confirm_above (0.7) must be below threshold (0.5)" in str(bands.value)
