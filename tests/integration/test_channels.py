"""Slack, webhooks and handoff to a person, end to end, on two real server processes.

- Two `python -m bot serve` processes share the test Redis (as two pods would); requests go
  to either. The model is a scripted OpenAI-compatible server (fast, predictable answers).
- Slack is a local fake Web API on a free port (`tests.fakes.FakeSlack`) that records calls;
  requests to our endpoints are signed with the real algorithm.
- Webhook receivers are real HTTP servers that fail, stall, or are down for a while.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from websockets.sync.client import ClientConnection, connect

from connectors.webhook.signature import HEADER, verify
from policies.schema import default_policy_path
from tests.fakes import (
    FakeSlack,
    Receiver,
    slack_event,
    slack_form,
    slack_headers,
    webhook_post,
)
from tests.openai_server import serve_openai
from tests.processes import ROOT, ScriptedAnswers, ServerProcess, free_port
from tests.support import DEMO_ABSTENTION

pytestmark = pytest.mark.integration

SECRET = "slack-signing-secret-for-tests"
SUPPORT = "CSUPPORT"
ADMIN = "channels-admin-key"
SMS = ["sms-secret-new", "sms-secret-old"]
# Long enough that writing it (about 2 s) outlasts the 1 s Retry-After the first post waits
# out: it is still being written when it is shown, so it is edited as it grows (12 steps
# were written in under a second, and the answer was sometimes complete at its first post).
LONG = " ".join(
    f"Refund step {i}: we check the parcel, log the return and send the money back."
    for i in range(30)
)
SCRIPT = {
    "return an item": "You have **30 days** from delivery to return an item.",
    "refund take": "Refunds take 5 to 10 business days after we receive the return.",
    "refund steps": LONG,
    # Long enough (about 5 s) to be paused in the middle of.
    "paused answer": " ".join(
        f"Step {i}: we check the parcel and log the return." for i in range(90)
    ),
}


def _ungrounded_policy(target: Path) -> Path:
    data = yaml.safe_load(default_policy_path().read_text())
    data["grounding"] = {"enabled": False}
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


@dataclass
class Deployment:
    servers: list[ServerProcess]
    slack: FakeSlack
    receivers: dict[str, Receiver]
    prefix: str
    redis_url: str
    model: ScriptedAnswers

    def url(self, i: int = 0) -> str:
        return self.servers[i].url

    def admin(self, method: str, path: str, i: int = 0, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        return httpx.request(method, self.url(i) + path, headers=headers, timeout=10, **kw)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, demo_index: Path, redis_url: str
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("channels")
    slack = FakeSlack()
    slack.start()
    receivers = {
        "sms": Receiver(),
        "flaky": Receiver(fail_first=2),
        "slow": Receiver(delay_s=2.5),
        "down": Receiver(port=free_port()),  # not started: down
        "dead": Receiver(port=free_port()),  # not started until the replay
    }
    for name in ("sms", "flaky", "slow"):
        receivers[name].start()

    def hook(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "secrets": SMS if name == "sms" else [f"{name}-secret"],
            "url": receivers[name].url + "/in",
            "backoff_s": 0.5,
            "backoff_max_s": 2,
            "timeout_s": 1,
            **extra,
        }

    webhooks = {name: hook(name) for name in ("sms", "flaky", "slow", "down")}
    webhooks["dead"] = hook("dead", max_attempts=2)
    model = ScriptedAnswers(SCRIPT, delay_s=0.005)
    prefix = f"ch-{uuid.uuid4().hex[:8]}:"
    with serve_openai(model, name="scripted") as llm:
        env = {
            **os.environ,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_KEY_PREFIX": prefix,
            "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
            "SWITCHBOARD_LLM__ENGINE": "openai",
            "SWITCHBOARD_LLM__BASE_URL": llm.base_url,
            "SWITCHBOARD_LLM__MODEL": "scripted",
            "SWITCHBOARD_KNOWLEDGE__INDEX_DIR": str(demo_index),
            "SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR": str(ROOT / "demo" / "kb"),
            "SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL": str(DEMO_ABSTENTION),
            "SWITCHBOARD_KNOWLEDGE__ABSTAIN": "false",
            "SWITCHBOARD_SLACK__SIGNING_SECRET": SECRET,
            "SWITCHBOARD_SLACK__BOT_TOKEN": "xoxb-test-token",
            "SWITCHBOARD_SLACK__API_URL": slack.url + "/api",
            "SWITCHBOARD_SLACK__SUPPORT_CHANNEL": SUPPORT,
            "SWITCHBOARD_SLACK__MAX_MESSAGE_CHARS": "400",
            "SWITCHBOARD_SLACK__STREAM_INTERVAL_S": "0.2",
            "SWITCHBOARD_PUBLIC_URL": "https://bot.northwind.test",
            "SWITCHBOARD_WEBHOOKS": json.dumps(webhooks),
            "SWITCHBOARD_JOBS__CLAIM_IDLE_S": "3",
            "SWITCHBOARD_ADMIN_API_KEY": ADMIN,
            "SWITCHBOARD_LOG_LEVEL": "info",
            # The scripted answers are transport payloads (numbered refund steps, "5 to 10
            # business days"), not help-center facts: no grounding check here (it is tested
            # in test_grounded_answers.py and test_grounding_minilm.py).
            "SWITCHBOARD_POLICY_FILE": str(_ungrounded_policy(tmp / "policy.yaml")),
            # The model writes the answers (the transport is under test, not quoting).
            "SWITCHBOARD_ANSWERS__MODE": "generate",
            "HF_HUB_OFFLINE": "1",
            "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        }
        servers = [ServerProcess(env, free_port(), tmp / f"server-{i}.log") for i in range(2)]
        for server in servers:
            server.start()
        try:
            for server in servers:
                server.wait_ready()
            yield Deployment(servers, slack, receivers, prefix, redis_url, model)
        finally:
            for server in servers:
                server.stop()
            slack.stop()
            for receiver in receivers.values():
                receiver.stop()
            for server in servers:
                print(f"--- {server.log_path.name} (tail)\n{server.log_path.read_text()[-3000:]}")


def _wait(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def _ts() -> str:
    return f"{time.time():.6f}"


# --- Slack ---------------------------------------------------------------------------------


def test_slack_refuses_unsigned_stale_future_and_tampered_requests(
    deployment: Deployment,
) -> None:
    url = deployment.url() + "/slack/events"
    body = json.dumps({"type": "url_verification", "challenge": "c-123"}).encode()
    ok = httpx.post(url, content=body, headers=slack_headers(SECRET, body))
    assert ok.status_code == 200 and ok.json() == {"challenge": "c-123"}
    assert httpx.post(url, content=body).status_code == 401  # no headers
    now = int(time.time())
    for skew in (-305, 305):  # (the exact bounds: the unit tests, with a fixed clock)
        stale = httpx.post(url, content=body, headers=slack_headers(SECRET, body, now + skew))
        assert stale.status_code == 401, skew
        assert "timestamp" in stale.json()["error"]["message"]
    tampered = body.replace(b"c-123", b"c-124")
    refused = httpx.post(url, content=tampered, headers=slack_headers(SECRET, body))
    assert refused.status_code == 401
    assert "match" in refused.json()["error"]["message"]
    wrong = httpx.post(url, content=body, headers=slack_headers("not-the-secret", body))
    assert wrong.status_code == 401


def test_a_mention_is_answered_once_in_its_thread_despite_retries(
    deployment: Deployment,
) -> None:
    slack, ts, event_id = deployment.slack, _ts(), "Ev" + uuid.uuid4().hex[:10]
    event = {
        "type": "app_mention",
        "user": "UCUSTOMER",
        "text": "<@UBOT> how long does a refund take?",
        "ts": ts,
        "channel": "CGENERAL",
        "event_ts": ts,
    }
    started = time.monotonic()
    first = slack_event(deployment.url(0), SECRET, event, event_id)
    assert first.status_code == 200
    assert time.monotonic() - started < 3  # acknowledged at once, answered later
    # Slack's retries (and a duplicate delivered to the other process at the same time).
    replies: list[int] = []

    def retry(i: int) -> None:
        server = deployment.url(i % 2)
        replies.append(slack_event(server, SECRET, event, event_id, retry=i).status_code)

    threads = [threading.Thread(target=retry, args=(i,)) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert replies == [200] * 4
    answers = _wait(lambda: slack.posts("CGENERAL", ts), what="the answer")
    time.sleep(2.0)  # time for a duplicate to show up, if there were one
    answers = slack.posts("CGENERAL", ts)
    assert len(answers) == 1, [a.body for a in answers]
    text = slack.messages("CGENERAL", ts)[0]  # as last edited
    assert "5 to 10 business days" in text
    assert "Sources: <https://bot.northwind.test/help/" in text  # citations as links
    assert answers[0].body["unfurl_links"] is False
    # The thread is the conversation: a follow-up in it continues the same history.
    follow = {**event, "ts": _ts(), "thread_ts": ts, "text": "<@UBOT> how do I return an item?"}
    slack_event(deployment.url(1), SECRET, follow, "Ev" + uuid.uuid4().hex[:10])
    _wait(lambda: "Sources" in "".join(slack.messages("CGENERAL", ts)[1:]), what="the follow-up")
    assert "*30 days*" in slack.messages("CGENERAL", ts)[1]  # mrkdwn bold
    prompt = deployment.model.prompts[-1]
    assert any("refund take" in m.content for m in prompt)  # the thread's history


def test_bots_edits_and_our_own_messages_are_ignored(deployment: Deployment) -> None:
    slack = deployment.slack
    before = len(slack.posts())
    base = {"type": "message", "channel": "DCUSTOMER", "channel_type": "im", "text": "hi"}
    for extra in (
        {"bot_id": "B999", "user": "UOTHERBOT"},
        {"user": "UBOT"},  # ourselves
        {"user": "UCUSTOMER", "subtype": "message_changed"},
        {"user": "UCUSTOMER", "channel_type": "channel", "channel": "CGENERAL"},  # no mention
    ):
        event = {**base, **extra, "ts": _ts()}
        reply = slack_event(deployment.url(), SECRET, event, "Ev" + uuid.uuid4().hex[:10])
        assert reply.status_code == 200
    time.sleep(2.0)
    assert len(slack.posts()) == before


def test_a_long_dm_answer_streams_by_edits_is_split_and_waits_out_rate_limits(
    deployment: Deployment,
) -> None:
    slack = deployment.slack
    slack.rate_limit_next(1, retry_after=1)
    channel = "D" + uuid.uuid4().hex[:8].upper()
    event = {
        "type": "message",
        "channel_type": "im",
        "channel": channel,
        "user": "UCUSTOMER",
        "text": "what are the refund steps?",
        "ts": _ts(),
    }
    slack_event(deployment.url(1), SECRET, event, "Ev" + uuid.uuid4().hex[:10])
    # The scripted steps are in no article, so no "Sources" line ends the answer: its last
    # words do, once the last piece is no longer shown cut (" …").
    # (Its last step, not any step: a piece posted whole can end a step while the next
    # piece is not posted yet.)
    last_step = LONG[LONG.rindex("Refund step") :]
    _wait(lambda: "".join(slack.messages(channel)).endswith(last_step), 60, "the whole answer")
    pieces = slack.messages(channel)
    assert len(pieces) >= 3 and all(len(p) <= 400 for p in pieces)
    assert " ".join(pieces).startswith(LONG)
    # It was shown while written: posted early, then edited as it grew, then completed.
    edits = slack.edits(slack.posts(channel)[0].ts)
    shown = [slack.posts(channel)[0].body["text"], *edits]
    assert len(shown) >= 3, shown
    assert all(text.endswith(" …") for text in shown[:-1])
    assert [len(t) for t in shown[:-1]] == sorted(len(t) for t in shown[:-1])
    assert shown[-1] == pieces[0]
    assert all(c.body.get("thread_ts") is None for c in slack.posts(channel))  # a DM
    assert len(slack.limited) >= 1
    waited = slack.posts(channel)[0].at - slack.limited[-1].at
    assert waited >= 0.9  # Retry-After was respected


def test_the_ask_command(deployment: Deployment) -> None:
    form = {
        "command": "/ask",
        "text": "How long does a refund take?",
        "user_id": "UASKER",
        "channel_id": "CASK",
        "team_id": "T1",
        "trigger_id": uuid.uuid4().hex,
    }
    reply = slack_form(deployment.url(), "/slack/commands", SECRET, form)
    assert reply.status_code == 200 and reply.json()["response_type"] == "ephemeral"
    again = slack_form(deployment.url(1), "/slack/commands", SECRET, form)  # a retry
    assert again.status_code == 200
    _wait(lambda: deployment.slack.posts("CASK"), what="the /ask answer")
    time.sleep(1.5)
    texts = deployment.slack.messages("CASK")
    assert sum("asked:" in text for text in texts) == 1, texts  # the retry was not answered
    client = redis.Redis.from_url(deployment.redis_url, decode_responses=True)
    asked = [
        key
        for key in client.scan_iter(match=deployment.prefix + "conv:*")
        if not key.endswith(":turns") and client.hget(key, "m:slack_channel") == "CASK"
    ]
    assert len(asked) == 1, "the retry made no conversation of its own"
    assert texts[0].startswith("<@UASKER> asked: How long does a refund take?")
    usage = slack_form(deployment.url(), "/slack/commands", SECRET, {**form, "text": ""})
    assert "Ask a question" in usage.json()["text"]
    bad = httpx.post(deployment.url() + "/slack/commands", data=form)
    assert bad.status_code == 401


# --- webhooks ------------------------------------------------------------------------------


def _message(conversation: str, text: str) -> dict[str, Any]:
    return {"conversation_id": conversation, "user_id": "u-1", "text": text, "metadata": {}}


def test_webhook_requests_are_verified_and_validated(deployment: Deployment) -> None:
    base, msg = deployment.url(), _message("c-" + uuid.uuid4().hex, "hello")
    body = json.dumps(msg).encode()
    assert webhook_post(base, "nope", SMS, msg).status_code == 404
    expired = webhook_post(base, "sms", SMS, msg, timestamp=int(time.time()) - 305)
    assert expired.status_code == 401 and "time" in expired.json()["error"]["message"]
    future = webhook_post(base, "sms", SMS, msg, timestamp=int(time.time()) + 305)
    assert future.status_code == 401
    wrong = webhook_post(base, "sms", ["guess"], msg)
    assert wrong.status_code == 401 and "match" in wrong.json()["error"]["message"]
    unsigned = httpx.post(base + "/webhooks/sms", content=body)
    assert unsigned.status_code == 401 and "missing" in unsigned.json()["error"]["message"]
    from connectors.webhook.signature import sign

    header = sign(body, SMS[:1])
    tampered = httpx.post(
        base + "/webhooks/sms", content=body.replace(b"hello", b"hellO"), headers={HEADER: header}
    )
    assert tampered.status_code == 401
    bad = webhook_post(base, "sms", SMS, {"conversation_id": "c", "text": 5})
    assert bad.status_code == 400 and "text" in bad.json()["error"]["message"]
    empty = webhook_post(base, "sms", SMS, _message("c", "   "))
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_message"
    for surrogate in ({"text": "\ud800"}, {"conversation_id": "c-\udfff"}):
        odd = webhook_post(base, "sms", SMS, {**_message("c", "hi"), **surrogate})
        assert odd.status_code == 400, odd.text
    rotated = webhook_post(base, "sms", [SMS[1]], _message("c-" + uuid.uuid4().hex, "hi"))
    assert rotated.status_code == 202  # the old secret still works while it rotates


def test_webhook_reply_is_signed_and_retries_are_answered_once(
    deployment: Deployment,
) -> None:
    receiver, conversation = deployment.receivers["sms"], "c-" + uuid.uuid4().hex
    msg, key = _message(conversation, "How long does a refund take?"), uuid.uuid4().hex
    results: list[httpx.Response] = []

    def send(i: int) -> None:
        results.append(webhook_post(deployment.url(i % 2), "sms", SMS, msg, key=key))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 200, 200, 202], [r.text for r in results]
    assert len({r.json()["message_id"] for r in results}) == 1
    replies = receiver.wait_for(1, conversation_id=conversation)
    time.sleep(1.5)
    replies = [d for d in receiver.accepted if d.body.get("conversation_id") == conversation]
    assert len(replies) == 1
    reply = replies[0]
    assert reply.body["type"] == "message" and "5 to 10 business days" in reply.body["text"]
    assert reply.body["in_reply_to"] == key and reply.body["channel"] == "sms"
    assert reply.headers["Switchboard-Delivery"] == reply.body["delivery_id"]
    verify(reply.headers[HEADER], reply.raw, SMS[:1])  # signed with the first secret
    assert reply.body["citations"][0]["url"].startswith("https://bot.northwind.test/help/")


def test_a_signed_webhook_request_replayed_with_new_idempotency_keys_is_answered_once(
    deployment: Deployment,
) -> None:
    """The Idempotency-Key is not signed: a captured request re-sent with fresh keys (to
    either server) is the same request."""
    from connectors.webhook.signature import sign

    receiver, conversation = deployment.receivers["sms"], "c-" + uuid.uuid4().hex
    body = json.dumps(_message(conversation, "How long does a refund take?")).encode()
    header = sign(body, SMS[:1])
    results = [
        httpx.post(
            deployment.url(i % 2) + "/webhooks/sms",
            content=body,
            headers={HEADER: header, "Idempotency-Key": uuid.uuid4().hex},
            timeout=10,
        )
        for i in range(4)
    ]
    assert [r.status_code for r in results] == [202, 200, 200, 200], [r.text for r in results]
    assert {r.json()["message_id"] for r in results} == {results[0].json()["message_id"]}
    receiver.wait_for(1, conversation_id=conversation)
    time.sleep(1.5)
    replies = [d for d in receiver.accepted if d.body.get("conversation_id") == conversation]
    assert len(replies) == 1
    # The sender's own next message (a new signature) is answered.
    again = webhook_post(deployment.url(), "sms", SMS, _message(conversation, "Thanks!"))
    assert again.status_code == 202


def test_pii_in_a_webhook_message_is_audited_and_counted(deployment: Deployment) -> None:
    labels = {"point": "input", "stage": "pii", "rule": "EMAIL_ADDRESS", "action": "redact"}
    before = _metric(deployment, "switchboard_policy_decisions_total", **labels)
    conversation = "c-" + uuid.uuid4().hex
    text = "Please write to jane.doe@example.com about my refund"
    sent = webhook_post(deployment.url(), "sms", SMS, _message(conversation, text))
    assert sent.status_code == 202
    deployment.receivers["sms"].wait_for(1, conversation_id=conversation)
    after = _metric(deployment, "switchboard_policy_decisions_total", **labels)
    assert after - before == 1


def test_a_server_paused_mid_answer_and_taken_over_answers_nothing_when_it_wakes(
    deployment: Deployment,
) -> None:
    """SIGSTOP on the process answering a webhook turn, past its job claim and its lock
    lease: the other process takes the job over and answers; SIGCONT: the first one's lease
    is gone, so it neither stores nor delivers a second answer."""
    import signal

    receiver, conversation = deployment.receivers["sms"], "c-" + uuid.uuid4().hex
    client = redis.Redis.from_url(deployment.redis_url, decode_responses=True)
    text = "Tell me the paused answer please"
    assert (
        webhook_post(deployment.url(), "sms", SMS, _message(conversation, text)).status_code == 202
    )
    stream = deployment.prefix + "jobs"
    deadline = time.monotonic() + 30
    holder = None
    while holder is None and time.monotonic() < deadline:  # who runs it, once it is running
        for entry in client.xpending_range(stream, "workers", min="-", max="+", count=10):
            pid = int(str(entry["consumer"]).rsplit("-", 2)[1])
            holder = next((s for s in deployment.servers if s.proc and s.proc.pid == pid), None)
        time.sleep(0.05)
    assert holder is not None and holder.proc is not None
    time.sleep(0.5)  # into the answer
    holder.proc.send_signal(signal.SIGSTOP)
    try:
        # The other server claims the silent job (3 s), waits out the lock (10 s) and answers.
        replies = receiver.wait_for(1, timeout=60, conversation_id=conversation, type="message")
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    assert replies[0].body["text"].startswith("Step 0: we check the parcel")
    time.sleep(4)  # the woken process would have finished its answer by now
    delivered = [
        d
        for d in receiver.accepted
        if d.body.get("conversation_id") == conversation and d.body.get("type") == "message"
    ]
    assert len(delivered) == 1, [d.body["text"][:60] for d in delivered]
    cid = _conversation_for_webhook(client, deployment.prefix, conversation)
    turns = client.lrange(f"{deployment.prefix}conv:{cid}:turns", 0, -1)
    assert [json.loads(t)["role"] for t in turns] == ["user", "assistant"]


def _conversation_for_webhook(client: Any, prefix: str, external: str) -> str:
    import hashlib

    digest = hashlib.sha256(external.encode()).hexdigest()[:32]
    cid = client.get(f"{prefix}webhook:conv:sms:{digest}")
    assert cid, "no conversation for the webhook's id"
    return str(cid)


def _metric(deployment: Deployment, name: str, **labels: str) -> float:
    """`name`'s samples with `labels`, summed over every process's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for server in deployment.servers:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and set(labels.items()) <= set(sample.labels.items()):
                    total += sample.value
    return total


def test_a_failing_receiver_gets_the_same_delivery_again_with_backoff(
    deployment: Deployment,
) -> None:
    receiver, conversation = deployment.receivers["flaky"], "c-" + uuid.uuid4().hex
    counted = {o: _metric(deployment, "switchboard_deliveries_total", channel="flaky", outcome=o)
               for o in ("retry", "delivered")}  # fmt: skip
    reply = webhook_post(
        deployment.url(), "flaky", ["flaky-secret"], _message(conversation, "return an item?")
    )
    assert reply.status_code == 202
    receiver.wait_for(1, timeout=60, conversation_id=conversation)
    tries = [d for d in receiver.deliveries if d.body.get("conversation_id") == conversation]
    assert [d.status for d in tries] == [500, 500, 200]
    assert len({d.headers["Switchboard-Delivery"] for d in tries}) == 1  # one delivery id
    assert [d.headers["Switchboard-Attempt"] for d in tries] == ["1", "2", "3"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    assert all(gap >= 0.04 for gap in gaps), gaps  # backed off (full jitter from 0.05 s)
    for outcome, moved in (("retry", 2), ("delivered", 1)):
        now = _metric(deployment, "switchboard_deliveries_total", channel="flaky", outcome=outcome)
        assert now - counted[outcome] == moved, outcome  # the metrics count each try once


def test_a_slow_receiver_times_out_and_is_retried(deployment: Deployment) -> None:
    receiver, conversation = deployment.receivers["slow"], "c-" + uuid.uuid4().hex
    webhook_post(deployment.url(), "slow", ["slow-secret"], _message(conversation, "refund take?"))
    _wait(lambda: [d for d in receiver.deliveries if d.body.get("conversation_id") == conversation])
    receiver.delay_s = 0.0  # it recovers
    done = receiver.wait_for(2, timeout=60, conversation_id=conversation)
    assert len(done) >= 2  # the first (timed out on our side) and the retry
    assert len({d.headers["Switchboard-Delivery"] for d in done}) == 1


def test_deliveries_survive_a_receiver_outage_and_a_process_restart(
    deployment: Deployment,
) -> None:
    receiver, conversation = deployment.receivers["down"], "c-" + uuid.uuid4().hex
    assert (
        webhook_post(
            deployment.url(), "down", ["down-secret"], _message(conversation, "refund take?")
        ).status_code
        == 202
    )
    time.sleep(3.0)  # the reply fails to deliver (nothing listens) and waits for a retry
    for server in deployment.servers:
        server.kill()  # no process is left to remember anything
    receiver.start()
    deployment.servers[0].start()
    deployment.servers[0].wait_ready()
    delivered = receiver.wait_for(1, timeout=60, conversation_id=conversation)
    assert "5 to 10 business days" in delivered[0].body["text"]
    deployment.servers[1].start()
    deployment.servers[1].wait_ready()


def test_dead_letters_are_listed_and_replayed(deployment: Deployment) -> None:
    receiver, conversation = deployment.receivers["dead"], "c-" + uuid.uuid4().hex
    webhook_post(deployment.url(), "dead", ["dead-secret"], _message(conversation, "refund take?"))

    def dead() -> list[dict[str, Any]]:
        rows = deployment.admin("GET", "/admin/deliveries/dead").json()
        return [
            r for r in rows if r["job"]["payload"]["body"].get("conversation_id") == conversation
        ]

    rows = _wait(dead, timeout=60, what="the dead letter")
    assert rows[0]["job"]["attempt"] == 1 and "ConnectError" in rows[0]["error"]
    unauthorized = httpx.get(deployment.url() + "/admin/deliveries/dead", timeout=10)
    assert unauthorized.status_code == 401
    receiver.start()
    job_id = rows[0]["job"]["id"]
    assert deployment.admin("POST", f"/admin/deliveries/dead/{job_id}/replay", 1).status_code == 200
    assert deployment.admin("POST", f"/admin/deliveries/dead/{job_id}/replay").status_code == 404
    delivered = receiver.wait_for(1, timeout=30, conversation_id=conversation)
    assert delivered[0].body["type"] == "message"
    assert not dead()


# --- handoff -------------------------------------------------------------------------------


def _frames(ws: ClientConnection, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        frames.append(frame)
        if until(frame):
            return frames


def _thread_of(deployment: Deployment, conversation: str) -> str:
    def root() -> str | None:
        for call in deployment.slack.posts(SUPPORT):
            if call.body.get("thread_ts") is None and conversation in call.body["text"]:
                return call.ts
        return None

    return str(_wait(root, what="the handoff thread"))


def test_handoff_to_an_agent_in_slack_and_back(deployment: Deployment) -> None:
    """The widget's customer asks for a person (on process B); the agent answers from Slack
    (handled by process A); the customer sees it live; resolve gives the bot back."""
    slack = deployment.slack
    events = ("requested", "taken", "resolved")
    counted = {e: _metric(deployment, "switchboard_handoffs_total", event=e) for e in events}
    with connect(deployment.servers[1].url.replace("http", "ws") + "/ws/chat") as ws:
        ws.send(json.dumps({"type": "message", "text": "how long does a refund take?", "id": "m1"}))
        frames = _frames(ws, lambda f: f["type"] == "message")
        started = next(f for f in frames if f["type"] == "conversation")
        conversation, token = started["conversation_id"], started["resume_token"]
        ws.send(
            json.dumps(
                {
                    "type": "message",
                    "id": "m2",
                    "text": "I want to talk to a person, my email is jane.doe@example.com",
                }
            )
        )
        final = _frames(ws, lambda f: f["type"] == "message")[-1]
        assert final["handoff"] == "asked for a person"
        thread = _thread_of(deployment, conversation)
        root = next(
            c
            for c in slack.posts(SUPPORT)
            if c.body.get("thread_ts") is None and conversation in c.body["text"]
        )
        actions = root.body["blocks"][1]["elements"]
        assert [a["action_id"] for a in actions] == ["switchboard_resolve", "switchboard_close"]
        transcript = _wait(lambda: slack.posts(SUPPORT, thread), what="the transcript")
        text = "\n".join(c.body["text"] for c in transcript)
        assert "*Transcript:*" in text and "refund take" in text
        assert "jane.doe@example.com" not in text and "&lt;EMAIL_ADDRESS&gt;" in text
        # While the person is being fetched the bot is silent; the message goes to them.
        ws.send(json.dumps({"type": "message", "text": "are you there?", "id": "m3"}))
        accepted = _frames(ws, lambda f: f["type"] == "accepted")[-1]
        assert accepted["to_agent"] is True
        _wait(
            lambda: any(
                "*Customer:* are you there?" in c.body["text"] for c in slack.posts(SUPPORT, thread)
            ),
            what="the relay",
        )
        # The agent answers in the thread; Slack calls process A; the widget is on B.
        agent_event = {
            "type": "message",
            "channel": SUPPORT,
            "channel_type": "channel",
            "user": "UAGENT",
            "text": "Hi Margarethe, I'm Dana. Let me check your refund.",
            "ts": _ts(),
            "thread_ts": thread,
        }
        event_id = "Ev" + uuid.uuid4().hex[:10]
        slack_event(deployment.url(0), SECRET, agent_event, event_id)
        slack_event(deployment.url(1), SECRET, agent_event, event_id, retry=1)
        frames = _frames(ws, lambda f: f["type"] == "message" and f.get("kind") == "agent")
        joined = [f for f in frames if f["type"] == "agent"]
        assert joined == [
            {"type": "agent", "state": "human", "name": "Dana", "seq": joined[0]["seq"]}
        ]
        assert frames[-1]["author"] == "Dana" and "Let me check" in frames[-1]["text"]
        # The customer reads the agent's words as written, their own name included...
        assert frames[-1]["text"] == "Hi Margarethe, I'm Dana. Let me check your refund."
        assert "sealed" not in frames[-1]
        assert not [f for f in frames if f["type"] == "token"]  # the bot said nothing
        status = deployment.admin("GET", f"/admin/conversations/{conversation}").json()
        assert status["status"] == "human"
        assert status["turns"][-1]["kind"] == "agent"
        # ...which are stored redacted, as everything is.
        assert status["turns"][-1]["text"] == "Hi <PERSON>, I'm Dana. Let me check your refund."
        # A reload (on the other process) shows them as written while the log holds them.
        with connect(deployment.servers[0].url.replace("http", "ws") + "/ws/chat") as again:
            again.send(
                json.dumps(
                    {"type": "hello", "conversation_id": conversation, "resume_token": token}
                )
            )
            hello = _frames(again, lambda f: f["type"] == "hello")[-1]
            assert hello["history"][-1]["text"].startswith("Hi Margarethe, I'm Dana.")
        # The agent presses Resolve: the bot is back, and answers again.
        payload = {
            "type": "block_actions",
            "user": {"id": "UAGENT"},
            "channel": {"id": SUPPORT},
            "actions": [{"action_id": "switchboard_resolve", "value": conversation}],
        }
        done = slack_form(
            deployment.url(0), "/slack/interactions", SECRET, {"payload": json.dumps(payload)}
        )
        assert done.status_code == 200
        back = _frames(ws, lambda f: f["type"] == "agent")[-1]
        assert back["state"] == "bot"
        _, final, _ = _turn(ws, "how do I return an item?", "m4")
        assert "30 days" in final["text"]
        _wait(
            lambda: any("resolved it" in c.body["text"] for c in slack.posts(SUPPORT, thread)),
            what="the resolve note",
        )
    for event in events:
        moved = _metric(deployment, "switchboard_handoffs_total", event=event) - counted[event]
        assert moved == 1, event
    # Only the agent's duplicate-free message was stored, and nothing un-redacted anywhere.
    turns = deployment.admin("GET", f"/admin/conversations/{conversation}").json()["turns"]
    assert sum(t.get("kind") == "agent" for t in turns) == 1
    assert _redis_holds(deployment, b"jane.doe") == []
    assert _redis_holds(deployment, b"Margarethe") == []


def _turn(ws: ClientConnection, text: str, mid: str) -> tuple[list[str], dict[str, Any], Any]:
    from tests.support import ws_turn

    return ws_turn(ws, text, mid)


def test_webhook_customer_handed_off_gets_the_agents_reply(deployment: Deployment) -> None:
    receiver, conversation = deployment.receivers["sms"], "c-" + uuid.uuid4().hex
    webhook_post(deployment.url(), "sms", SMS, _message(conversation, "talk to a person please"))
    reply = receiver.wait_for(1, conversation_id=conversation, type="message")[0]
    assert reply.body["handoff"] == "asked for a person"
    rows = deployment.admin("GET", "/admin/conversations/x").status_code
    assert rows == 404
    cid = _conversation_for(deployment, conversation)
    # The admin API takes the channel's own id, as the webhook payloads carry it.
    by_own_id = deployment.admin("GET", f"/admin/conversations/{conversation}?webhook=sms")
    assert by_own_id.status_code == 200 and by_own_id.json()["id"] == cid
    assert deployment.admin("GET", "/admin/conversations/nope?webhook=sms").status_code == 404
    thread = _thread_of(deployment, cid)
    event = {
        "type": "message",
        "channel": SUPPORT,
        "user": "UAGENT",
        "text": "Hello Margarethe, your refund is on its way.",
        "ts": _ts(),
        "thread_ts": thread,
    }
    slack_event(deployment.url(1), SECRET, event, "Ev" + uuid.uuid4().hex[:10])
    state = receiver.wait_for(1, conversation_id=conversation, type="agent")[0]
    assert (
        state.body["state"] == "human" and state.body["text"] == "Dana has joined the conversation."
    )
    agent = receiver.wait_for(1, conversation_id=conversation, kind="agent")[0]
    # The agent's words as written reach their customer (sealed on the way, then opened)...
    assert agent.body["text"] == "Hello Margarethe, your refund is on its way."
    assert agent.body["author"] == "Dana" and "sealed" not in agent.body
    # ...and are stored redacted.
    turns = deployment.admin("GET", f"/admin/conversations/{cid}").json()["turns"]
    assert turns[-1]["text"] == "Hello <PERSON>, your refund is on its way."
    assert _redis_holds(deployment, b"Margarethe") == []
    # /switchboard resolve, as an agent would type it.
    form = {
        "command": "/switchboard",
        "text": f"resolve {cid}",
        "user_id": "UAGENT",
        "channel_id": SUPPORT,
        "team_id": "T1",
        "trigger_id": uuid.uuid4().hex,
    }
    elsewhere = slack_form(
        deployment.url(), "/slack/commands", SECRET, {**form, "channel_id": "CGENERAL"}
    ).json()["text"]
    assert "support channel only" in elsewhere  # not any workspace member, anywhere
    assert slack_form(deployment.url(), "/slack/commands", SECRET, form).json()["text"] == "Done."
    back = receiver.wait_for(1, conversation_id=conversation, type="agent", state="bot")[0]
    assert back.body["text"] == "You're back with the assistant."
    # Handed over again, then closed: the customer is told it is closed, not that the
    # assistant is back.
    for verb in ("handoff", "close"):
        command = {**form, "text": f"{verb} {cid}", "trigger_id": uuid.uuid4().hex}
        assert slack_form(deployment.url(), "/slack/commands", SECRET, command).status_code == 200
    closed = receiver.wait_for(1, conversation_id=conversation, type="agent", state="closed")[0]
    assert closed.body["text"].startswith("This conversation is closed.")


def test_a_slack_customer_handed_off_reads_the_agents_words_as_written(
    deployment: Deployment,
) -> None:
    slack = deployment.slack
    channel = "D" + uuid.uuid4().hex[:8].upper()
    event = {
        "type": "message",
        "channel_type": "im",
        "channel": channel,
        "user": "UCUSTOMER",
        "text": "I want to talk to a person",
        "ts": _ts(),
    }
    slack_event(deployment.url(0), SECRET, event, "Ev" + uuid.uuid4().hex[:10])
    _wait(lambda: slack.posts(channel), what="the handoff reply")

    def handoff() -> str | None:
        for call in slack.posts(SUPPORT):
            text = call.body["text"]
            if call.body.get("thread_ts") is None and "(slack)" in text:
                cid = text.rsplit("`", 2)[-2]
                if deployment.admin("GET", f"/admin/conversations/{cid}").json()["status"] in (
                    "pending_human",
                ):
                    return cid
        return None

    cid = str(_wait(handoff, what="the Slack customer's handoff"))
    thread = _thread_of(deployment, cid)
    agent = {
        "type": "message",
        "channel": SUPPORT,
        "user": "UAGENT",
        "text": "Hi Margarethe, Dana here. I'll sort out your refund.",
        "ts": _ts(),
        "thread_ts": thread,
    }
    slack_event(deployment.url(1), SECRET, agent, "Ev" + uuid.uuid4().hex[:10])
    said = _wait(
        lambda: [t for t in slack.messages(channel) if "Dana here" in t], what="the agent's words"
    )
    assert said == ["*Dana:* Hi Margarethe, Dana here. I'll sort out your refund."]
    turns = deployment.admin("GET", f"/admin/conversations/{cid}").json()["turns"]
    assert turns[-1]["text"] == "Hi <PERSON>, Dana here. I'll sort out your refund."
    assert _redis_holds(deployment, b"Margarethe") == []


def _redis_holds(deployment: Deployment, needle: bytes) -> list[str]:
    """The keys of this deployment whose values hold `needle` (un-redacted text)."""
    client = redis.Redis.from_url(deployment.redis_url)
    found = []
    for key in client.scan_iter(match=deployment.prefix + "*"):
        kind = client.type(key).decode()
        dump = {
            "string": lambda k: client.get(k),
            "hash": lambda k: client.hgetall(k),
            "list": lambda k: client.lrange(k, 0, -1),
            "stream": lambda k: client.xrange(k),
            "zset": lambda k: client.zrange(k, 0, -1),
        }.get(kind, lambda k: b"")(key)
        if needle in repr(dump).encode():
            found.append(key.decode())
    return found


def _conversation_for(deployment: Deployment, external: str) -> str:
    """Our conversation id for a webhook conversation (from the handoff thread's header)."""

    def find() -> str | None:
        for call in deployment.slack.posts(SUPPORT):
            text = call.body["text"]
            if call.body.get("thread_ts") is None and "(webhook)" in text:
                return text.rsplit("`", 2)[-2]
        return None

    return str(_wait(find, what="the webhook conversation's handoff"))
