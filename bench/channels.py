"""Slack and webhook channels: acknowledgement time vs. answer time, over the real server.

    .venv/bin/python bench/channels.py [--questions N] [--port P]

Starts `switchboard serve` (the real default model, the demo help center: run `make ingest`
first) with Slack pointed at a local fake Web API and a webhook channel pointed at a local
receiver, on Redis DB 14. For each demo question it sends a signed Slack `app_mention` and
Slack's immediate retry of it, and a signed webhook message, and measures:

- Slack: time to the HTTP acknowledgement (Slack retries after 3 s), time until the answer
  is first visible in Slack (streaming), until it is complete, and the posts per event
  (1 = no duplicate reply);
- webhook: time to the 202, and until the signed reply reached the receiver;
- baseline, side by side: the same question answered inside the request (`POST
  /api/messages`), which is what a connector that answers before acknowledging (Rasa's
  Slack connector) makes Slack wait; answers over 3 s are the ones Slack would retry.

Medians and p95. A figure, not a pass/fail test.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import statistics
import subprocess
import time
import uuid

import httpx
import redis

from bench.turn_latency import QUESTIONS, pct
from tests.fakes import FakeSlack, Receiver, slack_event, webhook_post

SECRET = "bench-slack-secret"
HOOK = ["bench-webhook-secret"]
REDIS = "redis://127.0.0.1:6379/14"


def row(name: str, values: list[float]) -> str:
    return (
        f"  {name:<44} median {statistics.median(values) * 1000:8.0f} ms"
        f"   p95 {pct(values, 0.95) * 1000:8.0f} ms"
    )


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited; see its log above")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    questions = (QUESTIONS * 10)[: args.questions]
    slack, receiver = FakeSlack(), Receiver()
    slack.start()
    receiver.start()
    prefix = f"bench-ch-{uuid.uuid4().hex[:6]}:"
    env = {
        **os.environ,
        "SWITCHBOARD_PORT": str(args.port),
        "SWITCHBOARD_REDIS_URL": REDIS,
        "SWITCHBOARD_KEY_PREFIX": prefix,
        "SWITCHBOARD_POLICY_FILE": os.environ.get(
            "SWITCHBOARD_POLICY_FILE", str(ROOT / "demo" / "policy.yaml")
        ),
        "SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR": str(ROOT / "demo" / "kb"),
        "SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL": str(ROOT / "demo" / "abstain.json"),
        "SWITCHBOARD_SLACK__SIGNING_SECRET": SECRET,
        "SWITCHBOARD_SLACK__BOT_TOKEN": "xoxb-bench",
        "SWITCHBOARD_SLACK__API_URL": slack.url + "/api",
        "SWITCHBOARD_WEBHOOKS": json.dumps({"bench": {"secrets": HOOK, "url": receiver.url}}),
        "SWITCHBOARD_LOG_LEVEL": "warning",
    }
    base = f"http://127.0.0.1:{args.port}"
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=ROOT)
    acks, retry_acks, first_seen, complete, posts = [], [], [], [], []
    hook_acks, hook_done, baseline = [], [], []
    try:
        wait_ready(base, proc)
        httpx.post(base + "/api/messages", json={"text": "hello"}, timeout=300)  # warm
        for i, question in enumerate(questions):
            channel, ts, event_id = f"CBENCH{i}", f"{time.time():.6f}", f"EvBench{i}"
            event = {
                "type": "app_mention",
                "user": "UBENCH",
                "text": f"<@UBOT> {question}",
                "ts": ts,
                "channel": channel,
            }
            began = time.perf_counter()
            assert slack_event(base, SECRET, event, event_id).status_code == 200
            acks.append(time.perf_counter() - began)
            retried = time.perf_counter()
            assert slack_event(base, SECRET, event, event_id, retry=1).status_code == 200
            retry_acks.append(time.perf_counter() - retried)
            seen = None
            while True:
                texts = slack.messages(channel)
                if texts and seen is None:
                    seen = time.perf_counter() - began
                done = texts and not any(text.endswith(" …") for text in texts)  # no "writing"
                if done or time.perf_counter() - began > 300:
                    break
                time.sleep(0.02)
            complete.append(time.perf_counter() - began)
            first_seen.append(seen or complete[-1])
            time.sleep(0.5)  # a duplicate would show up by now
            posts.append(len(slack.posts(channel)))

            conversation = f"bench-{i}"
            message = {"conversation_id": conversation, "user_id": "u", "text": question}
            began = time.perf_counter()
            assert webhook_post(base, "bench", HOOK, message).status_code == 202
            hook_acks.append(time.perf_counter() - began)
            receiver.wait_for(1, timeout=300, conversation_id=conversation)
            hook_done.append(time.perf_counter() - began)

            began = time.perf_counter()
            httpx.post(base + "/api/messages", json={"text": question}, timeout=300)
            baseline.append(time.perf_counter() - began)
            print(f"  {i + 1}/{len(questions)} done", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
        slack.stop()
        receiver.stop()
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
    n = len(questions)
    print(f"\nChannels over the real server, default model, {n} questions (one at a time)")
    print("Slack (Events API):")
    print(row("acknowledged (Slack retries after 3 s)", acks))
    print(row("Slack's retry acknowledged (deduplicated)", retry_acks))
    print(row("answer first visible (streamed by edits)", first_seen))
    print(row("answer complete", complete))
    print(f"  posts per event: {sorted(set(posts))} (1 = no duplicate reply)")
    print("Webhook:")
    print(row("acknowledged (202)", hook_acks))
    print(row("signed reply delivered", hook_done))
    print("Baseline: answered inside the request (a connector that acks after the turn):")
    print(row("request time = what Slack would wait", baseline))
    late = sum(t > 3.0 for t in baseline)
    print(f"  over Slack's 3 s: {late}/{n} (each would be retried: a duplicate reply)")
    ratio = statistics.median(baseline) / statistics.median(acks)
    print(f"  ratio of medians, in-request answer / our acknowledgement: {ratio:.0f}x")


if __name__ == "__main__":
    main()
