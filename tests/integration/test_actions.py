"""Business actions against a real Rasa action server (rasa-sdk, in its own venv).

The example actions package (`examples/rasa_actions/order_actions`) runs under
`python -m rasa_sdk`; Switchboard runs as a real server on a free port with the example
actions file pointed at it, and the conversation goes through `POST /api/messages`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from bot.actions.client import ActionFailed, RasaActionClient
from bot.app import create_app
from bot.settings import LLMSettings, Settings
from tests.processes import ROOT
from tests.rasa_env import ActionServer
from tests.support import DEMO_ABSTENTION, LiveServer, live_server

pytestmark = pytest.mark.integration

FAILURE = "Sorry — I couldn't complete that right now. Would you like to talk to a person?"


@pytest.fixture(scope="module")
def actions_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActionServer]:
    server = ActionServer(tmp_path_factory.mktemp("rasa") / "actions.log").start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def bot(
    actions_server: ActionServer,
    tiny_model_dir: Path,
    demo_index: Path,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("actions-bot")
    config = yaml.safe_load((ROOT / "examples" / "actions.yaml").read_text())
    config["server"]["url"] = actions_server.url
    config["server"]["timeout_s"] = 5
    (tmp / "actions.yaml").write_text(yaml.safe_dump(config))
    settings = Settings(
        redis_url=redis_url,
        key_prefix="sbact:",
        data_dir=tmp / "data",
        actions_file=tmp / "actions.yaml",
        llm=LLMSettings(model=str(tiny_model_dir), max_new_tokens=8),
        knowledge={"index_dir": demo_index, "abstention_model": DEMO_ABSTENTION},
        admin_api_key="admin-key",
    )
    with live_server(create_app(settings)) as live:
        yield live


_TOKENS: dict[str, str] = {}  # conversation id -> its conversation_token


def _say(bot: LiveServer, text: str, cid: str | None = None) -> dict[str, Any]:
    payload = {"text": text, "conversation_id": cid, "conversation_token": _TOKENS.get(cid or "")}
    reply = httpx.post(bot.http + "/api/messages", json=payload, timeout=120)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    _TOKENS[body["conversation_id"]] = body["conversation_token"]
    return body


def _state(bot: LiveServer, cid: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{bot.http}/admin/conversations/{cid}", headers={"Authorization": "Bearer admin-key"}
    )
    turns: dict[str, Any] = reply.json()
    return turns


def test_a_slot_is_asked_for_filled_and_the_action_answers(bot: LiveServer) -> None:
    first = _say(bot, "Where is my order?")
    cid = first["conversation_id"]
    assert first["text"].startswith("What's your order number?")
    second = _say(bot, "It's 10567", cid)
    assert "shipped with UPS" in second["text"] and "2026-12-02" in second["text"]
    card = {"type": "order", "order_id": "10567", "status": "shipped", "item": "Alpine down jacket"}
    assert second["custom"] == [card]  # the action's JSON, for the page to render
    # The slots the action set survive into the next turn: no question this time.
    third = _say(bot, "has my order shipped yet?", cid)
    assert "shipped with UPS" in third["text"]
    kinds = [t.get("kind", "") for t in _state(bot, cid)["turns"] if t["role"] == "assistant"]
    assert kinds == ["action", "action", "action"]


def test_confirmation_then_the_action_and_its_followup(bot: LiveServer, redis_url: str) -> None:
    first = _say(bot, "Please cancel my order 10234")
    cid = first["conversation_id"]
    assert first["text"] == "Cancel order 10234? This can't be undone. (yes/no)"
    done = _say(bot, "yes", cid)
    assert "Done: order 10234 is cancelled." in done["text"]
    assert "is cancelled; the refund is on its way" in done["text"]  # the followup action
    # The actions' SlotSet events are kept with the conversation in Redis, with the
    # Rasa-style event log the next action's tracker carries.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    state = json.loads(client.hget(f"sbact:conv:{cid}", "m:rasa") or "{}")
    client.close()
    assert state["slots"]["last_cancelled"] == "10234"
    assert state["slots"]["order_status"] == "cancelled"
    names = [e.get("name") for e in state["events"] if e["event"] == "action"]
    assert names[-2:] == ["action_cancel_order", "action_order_status"]
    again = _say(bot, "cancel order 10234 please", cid)
    assert again["text"].startswith("Cancel order 10234?")
    refused = _say(bot, "no", cid)
    assert refused["text"] == "Okay, I won't do that."


def test_a_pausing_action_hands_the_conversation_to_a_person(bot: LiveServer) -> None:
    first = _say(bot, "where is my order 99999?")
    assert "lost in transit" in first["text"]
    assert first["handoff"] == "the action asked for a person"


def test_other_questions_go_to_retrieval_and_the_model(bot: LiveServer) -> None:
    answer = _say(bot, "How long does a refund take?")
    kinds = [t.get("kind", "") for t in _state(bot, answer["conversation_id"])["turns"]]
    assert "action" not in kinds
    assert answer["citations"]  # a retrieval answer


async def test_the_client_speaks_the_protocol_449_and_errors(actions_server: ActionServer) -> None:
    domain = {"intents": [], "entities": [], "slots": {}, "responses": {}, "actions": []}
    client = RasaActionClient(actions_server.url, 5, {**domain, "forms": {"x": {}}})
    tracker = {
        "sender_id": "u1",
        "slots": {"order_id": "10999"},
        "latest_message": {},
        "events": [],
    }
    try:
        assert {"action_order_status", "action_cancel_order"} <= set(await client.actions())
        result = await client.run("action_order_status", tracker)
        assert client.domain_sends == 1  # a fresh server asked for the domain: 449, resent
        assert "delivered on 2026-11-04" in result["responses"][0]["text"]
        assert result["events"][0] == {
            "event": "slot",
            "timestamp": None,
            "name": "order_status",
            "value": "delivered",
        }
        await client.run("action_order_status", tracker)
        assert client.domain_sends == 1  # the server kept the domain for our digest
        with pytest.raises(ActionFailed) as unknown:
            await client.run("action_nope", tracker)
        assert unknown.value.status == 404 and "No registered action" in unknown.value.reason
        with pytest.raises(ActionFailed) as broken:
            await client.run("action_order_status", {"slots": {}})  # no sender_id
        assert broken.value.status == 500
    finally:
        await client.close()
    down = RasaActionClient("http://127.0.0.1:9", 2, domain)
    with pytest.raises(ActionFailed) as unreachable:
        await down.run("action_order_status", tracker)
    assert "unreachable" in unreachable.value.reason
    await down.close()


async def test_a_slow_or_garbled_server_fails_cleanly() -> None:
    from tests.fakes import Receiver

    slow = Receiver(delay_s=3.0)
    slow.start()
    client = RasaActionClient(slow.url, 1, {})
    try:
        with pytest.raises(ActionFailed) as late:
            await client.run("action_order_status", {"sender_id": "u"})
        assert "in time" in late.value.reason
        slow.delay_s = 0.0  # answers 200 with an empty body: not the protocol's JSON
        with pytest.raises(ActionFailed) as garbled:
            await client.run("action_order_status", {"sender_id": "u"})
        assert "not JSON" in garbled.value.reason
    finally:
        await client.close()
        slow.stop()
        await asyncio.sleep(0)


def test_the_action_server_dying_mid_conversation(
    bot: LiveServer, actions_server: ActionServer
) -> None:
    first = _say(bot, "where is my order?")
    cid = first["conversation_id"]
    assert first["text"].startswith("What's your order number?")
    assert httpx.get(bot.http + "/readyz").json()["checks"]["actions"] == "ok"
    actions_server.kill()
    unready = httpx.get(bot.http + "/readyz")  # a configured dependency is down
    assert unready.status_code == 503 and unready.json()["checks"]["actions"] == "unreachable"
    failed = _say(bot, "10567", cid)
    assert failed["text"] == FAILURE  # an apology and the offer of a person
    state = _state(bot, cid)
    assert state["turns"][-1]["kind"] == "action"
    actions_server.start()
    back = _say(bot, "where is my order?", cid)
    assert "shipped with UPS" in back["text"]  # the slot from the message was kept
    assert httpx.get(bot.http + "/readyz").status_code == 200


async def test_switchboard_runs_the_package_itself_and_restarts_it(tmp_path: Path) -> None:
    """`server: {package: ...}`: rasa-sdk's server for the package, started, watched and
    stopped by Switchboard, in the environment of its own given by `python`."""
    import signal

    from bot.actions.engine import ActionEngine
    from bot.actions.schema import load_actions
    from bot.sessions import InMemorySessionStore
    from bot.settings import SessionSettings
    from knowledge.embeddings import HashingEmbedder
    from policies.engine import PolicyEngine
    from policies.pii import PatternRedactor
    from policies.schema import default_policy_path, load_policy
    from tests.rasa_env import rasa_python

    config = yaml.safe_load((ROOT / "examples" / "actions.yaml").read_text())
    config["server"] = {
        "package": "order_actions",
        # relative to the actions file
        "directory": _relative(ROOT / "examples" / "rasa_actions", tmp_path),
        "python": str(rasa_python()),
    }
    path = tmp_path / "actions.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_actions(path)
    store = InMemorySessionStore(SessionSettings())
    engine = ActionEngine(loaded, HashingEmbedder(), store)
    engine.warm_up()
    policies = PolicyEngine(load_policy(default_policy_path()), PatternRedactor())
    policies.warm_up()
    session = await store.create("test")

    async def say(text: str) -> str:
        fresh = await store.get(session.id)
        assert fresh is not None
        reply = await engine.handle(fresh, text, "test", policies)
        assert reply is not None
        return reply.text

    try:
        assert "action_order_status" in await engine.discover()
        assert engine.managed is not None and engine.managed.alive()
        assert (await say("where is my order")).startswith("What's your order number?")
        assert "shipped with UPS" in await say("10567")
        assert engine.managed.proc is not None
        os.killpg(engine.managed.proc.pid, signal.SIGKILL)  # it dies between two turns
        engine.managed.proc.wait(10)
        assert "shipped with UPS" in await say("where is my order")
        assert engine.managed.starts == 2
    finally:
        await engine.close()
    assert not engine.managed.alive()


def _relative(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)
