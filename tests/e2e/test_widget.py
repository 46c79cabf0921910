"""The embeddable widget in headless Chromium, against two real server processes."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import ADMIN_KEY, IMAGE_HOST, SCRIPT, SLACK_SECRET, SUPPORT, Deployment
from tests.fakes import slack_event, slack_form

pytestmark = pytest.mark.e2e

RETURNS_Q = "How long do I have to return an item?"
REFUND_Q = "How long does a refund take?"
GIFT_Q = "Can I pay with gift cards?"


def _words(text: str) -> str:
    return " ".join(text.split())


def _markdown_text(text: str) -> str:
    """What the widget shows for the script's markdown (bold markers gone)."""
    return _words(text.replace("**", ""))


def _open(page: Page, url: str) -> None:
    page.goto(url)
    page.locator(".launcher").click()
    expect(page.locator("textarea")).to_be_focused()


def _ask(page: Page, question: str) -> None:
    page.locator("textarea").fill(question)
    page.keyboard.press("Enter")


def _streaming(page: Page, question: str) -> Any:
    """Ask `question`; the answer's bubble once its first words are in."""
    _ask(page, question)
    bubble = page.locator(".msg.bot[data-streaming]")
    bubble.wait_for(timeout=30_000)
    return bubble


def _final(page: Page, n: int = 1) -> Any:
    """The n-th finished bot answer (1-based), once it is there."""
    answer = page.locator(".msg.bot[data-message-id]").nth(n - 1)
    answer.wait_for(timeout=60_000)
    return answer


def _local_only(page: Page) -> list[str]:
    """Block every request that would leave the machine; return the list of those tried."""
    tried: list[str] = []

    def handle(route: Route) -> None:
        url = route.request.url
        if re.match(r"^(http|ws)s?://(127\.0\.0\.1|localhost)[:/]", url) or url.startswith("data:"):
            route.continue_()
            return
        tried.append(url)
        if IMAGE_HOST in url:  # the allowed image host: answered here, never fetched
            route.fulfill(status=200, content_type="image/png", body=_PNG)
        else:
            route.abort()

    page.route("**/*", handle)
    return tried


_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def test_answer_streams_in_with_citation_and_a_screenshot_is_saved(
    page: Page, deployment: Deployment, artifacts: Any
) -> None:
    _local_only(page)
    _open(page, deployment.url + "/")
    expect(page.locator(".system")).to_contain_text("Ask us about orders")
    streaming = _streaming(page, RETURNS_Q)
    expect(page.locator(".msg.user").last).to_contain_text(RETURNS_Q)
    partial = _words(streaming.inner_text())
    full = _markdown_text(SCRIPT["return an item"])
    assert partial and len(partial) < len(full), "tokens show before the answer is complete"

    answer = _final(page)
    assert _words(answer.locator(".body").inner_text()) == full
    expect(answer.locator("strong")).to_have_text("30 days")  # markdown, rendered
    link = answer.locator(".sources a").first
    expect(link).to_have_attribute("href", re.compile(r"/help/returns-policy\.md$"))
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    expect(answer.locator("time")).to_have_count(1)
    assert httpx.get(str(link.get_attribute("href"))).status_code == 200, "the citation opens"
    expect(page.locator(".typing")).to_have_count(0)
    page.screenshot(path=artifacts / "widget-open.png")
    assert not page.errors  # type: ignore[attr-defined]


def test_reload_mid_answer_shows_the_whole_answer_and_history(
    page: Page, deployment: Deployment
) -> None:
    _local_only(page)
    _open(page, deployment.url + "/")
    _streaming(page, REFUND_Q)
    page.reload()

    # Open again by itself (it was open), rejoins the conversation and finishes the answer.
    answer = _final(page)
    assert _words(answer.locator(".body").inner_text()) == _words(SCRIPT["refund take"])
    expect(page.locator(".msg.user .body")).to_have_text([REFUND_Q])
    expect(page.locator(".msg.bot")).to_have_count(1)
    _ask(page, RETURNS_Q)
    second = _final(page, 2)
    assert "30 days" in second.inner_text(), "the conversation goes on after the reload"
    assert not page.errors  # type: ignore[attr-defined]


def test_answer_completes_from_the_other_process_when_the_one_streaming_it_dies(
    page: Page, deployment: Deployment
) -> None:
    _local_only(page)
    _open(page, deployment.url + "/")
    streaming = _streaming(page, REFUND_Q)
    holder = next(s for s in deployment.servers if s.port == deployment.front.connections[-1])
    other = next(s for s in deployment.servers if s is not holder)
    shown_before = _words(streaming.inner_text())
    holder.kill()

    answer = _final(page)
    text = _words(answer.locator(".body").inner_text())
    assert text == _words(SCRIPT["refund take"]), "the answer is finished, not restarted"
    assert text.startswith(shown_before)
    expect(page.locator(".msg.bot")).to_have_count(1)
    continued = [p for p in deployment.model.prompts if p[-1].role == "assistant"]
    assert continued, "the other process asked the model to go on from what was said"
    assert deployment.front.connections[-1] == other.port
    assert not page.errors  # type: ignore[attr-defined]


def test_hostile_markup_in_an_answer_renders_inert(page: Page, deployment: Deployment) -> None:
    tried = _local_only(page)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    _open(page, deployment.url + "/")
    _ask(page, GIFT_Q)
    answer = _final(page)
    body = answer.locator(".body")
    text = body.inner_text()
    assert "<img src=x onerror=" in text, "raw HTML shows as text"
    assert "<script>" in text
    expect(body.locator("img[src='x'], script, iframe")).to_have_count(0)
    expect(body.locator("a")).to_have_count(0)  # the javascript: link is plain text
    assert "click here" in text
    assert "[image: logo]" in text, "an image from a foreign domain is not loaded"
    expect(body.locator("img")).to_have_attribute("src", f"https://{IMAGE_HOST}/card.png")
    page.wait_for_timeout(500)
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    assert not any("evil.example" in url for url in tried), tried


class _HostPage:
    """Another website embedding the widget: a page on its own origin."""

    def __init__(self, port: int, widget_url: str, site_key: str) -> None:
        html = (
            "<!doctype html><html><body><h1>Partner shop</h1>"
            f'<script src="{widget_url}/widget.js" data-site-key="{site_key}" '
            'data-open="true" data-title="Partner help" defer></script></body></html>'
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def partner(deployment: Deployment) -> Iterator[_HostPage]:
    site = _HostPage(deployment.host_page_port, deployment.url, "partner")
    yield site
    site.close()


def test_an_allowed_origin_embeds_the_widget(
    page: Page, deployment: Deployment, partner: _HostPage
) -> None:
    _local_only(page)
    page.goto(f"http://127.0.0.1:{deployment.host_page_port}/")
    expect(page.locator(".panel")).to_be_visible()  # data-open="true"
    _ask(page, RETURNS_Q)
    assert "30 days" in _final(page).inner_text()


def test_a_disallowed_origin_cannot_connect(
    page: Page, deployment: Deployment, partner: _HostPage
) -> None:
    _local_only(page)
    # Same server, but "localhost" is another origin than the allowed "127.0.0.1".
    page.goto(f"http://localhost:{deployment.host_page_port}/")
    expect(page.locator(".alert")).to_contain_text("may not use site key 'partner'")
    ws_url = deployment.url.replace("http", "ws") + "/ws/chat"
    outcome = page.evaluate(
        """(url) => new Promise((done) => {
            const ws = new WebSocket(url);
            ws.onopen = () => done("open");
            ws.onerror = () => done("refused");
        })""",
        ws_url,
    )
    assert outcome == "refused", "no token, foreign origin: the handshake is refused"
    refused = httpx.post(
        deployment.url + "/api/widget/token",
        content=json.dumps({"site_key": "demo"}),
        headers={"Origin": f"http://localhost:{deployment.host_page_port}"},
    )
    assert refused.status_code == 403
    assert "origin" in refused.json()["error"]["message"]


def test_feedback_is_stored_and_survives_a_reload(page: Page, deployment: Deployment) -> None:
    _local_only(page)
    _open(page, deployment.url + "/")
    _ask(page, RETURNS_Q)
    answer = _final(page)
    up = answer.locator("button[data-rating='up']")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    message_id = answer.get_attribute("data-message-id")
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for _ in range(20):
        rows = httpx.get(deployment.url + "/admin/feedback", headers=headers).json()
        if any(r["message_id"] == message_id for r in rows):
            break
        page.wait_for_timeout(200)
    assert {"message_id": message_id, "rating": "up"}.items() <= next(
        r for r in rows if r["message_id"] == message_id
    ).items()
    page.reload()
    expect(_final(page).locator("button[data-rating='up']")).to_have_attribute(
        "aria-pressed", "true"
    )


def test_a_person_takes_over_from_slack_and_hands_back(page: Page, deployment: Deployment) -> None:
    """The real loop: the customer asks for a person; the agent answers in the Slack thread
    (Slack calls one process, whichever holds the widget); the widget shows it live and
    after a reload; the bot is silent until the agent resolves."""
    _local_only(page)
    _open(page, deployment.url + "/")
    _ask(page, RETURNS_Q)
    _final(page)
    _ask(page, "Can I talk to a person please?")
    _final(page, 2)
    expect(page.locator(".system").last).to_have_text("We've asked a person to help you.")
    cid = json.loads(page.evaluate("localStorage.getItem('switchboard:demo')"))["conversation_id"]
    slack = deployment.slack

    def thread() -> str | None:
        for call in slack.posts(SUPPORT):
            if call.body.get("thread_ts") is None and cid in call.body["text"]:
                return call.ts
        return None

    deadline = time.monotonic() + 30
    while (ts := thread()) is None:
        assert time.monotonic() < deadline, "no handoff thread in Slack"
        time.sleep(0.2)
    said = {
        "type": "message",
        "channel": SUPPORT,
        "user": "UAGENT",
        "text": "Hi, Dana here. Let me look at your return.",
        "ts": f"{time.time():.6f}",
        "thread_ts": ts,
    }
    for server in deployment.servers:  # Slack's retry lands on the other process: once
        assert slack_event(server.url, SLACK_SECRET, said, "EvE2E1").status_code == 200
    expect(page.locator(".system").last).to_have_text("You're now chatting with Dana.")
    agent = page.locator(".msg.agent")
    expect(agent).to_have_count(1)
    expect(agent.locator(".body")).to_have_text("Hi, Dana here. Let me look at your return.")
    expect(agent.locator(".who")).to_have_text("Dana")
    expect(agent.locator("button[data-rating]")).to_have_count(0)  # no thumbs for people
    _ask(page, "Thanks, I'll wait")
    expect(page.locator(".msg.user").last).to_contain_text("Thanks, I'll wait")
    page.wait_for_timeout(1500)
    expect(page.locator(".typing")).to_have_count(0)  # the bot is not "typing"
    expect(page.locator(".msg.bot")).to_have_count(3)  # two answers and Dana's message
    page.reload()  # opens again by itself (it was open), from the stored history
    expect(page.locator(".msg.agent .who")).to_have_text("Dana")
    expect(page.locator(".msg.agent .body")).to_be_visible()
    payload = {
        "type": "block_actions",
        "user": {"id": "UAGENT"},
        "channel": {"id": SUPPORT},
        "actions": [{"action_id": "switchboard_resolve", "value": cid}],
    }
    pressed = slack_form(
        deployment.servers[1].url,
        "/slack/interactions",
        SLACK_SECRET,
        {"payload": json.dumps(payload)},
    )
    assert pressed.status_code == 200
    expect(page.locator(".system").last).to_have_text("You're back with the assistant.")
    _ask(page, REFUND_Q)
    expect(page.locator(".msg.bot[data-message-id]")).to_have_count(4, timeout=60_000)


def test_keyboard_phone_viewport_and_style_isolation(page: Page, deployment: Deployment) -> None:
    _local_only(page)
    page.set_viewport_size({"width": 375, "height": 667})
    page.goto(deployment.url + "/")
    launcher = page.locator(".launcher")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.focus()
    page.keyboard.press("Enter")
    panel = page.locator(".panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("role", "dialog")
    expect(page.locator("textarea")).to_be_focused()
    box = panel.bounding_box()
    assert box is not None and box["width"] == 375, "full width on a phone"
    # The host page forces Comic Sans on every button and div; the widget keeps its font.
    font = page.locator("form button").evaluate("el => getComputedStyle(el).fontFamily")
    assert "Comic Sans" not in font
    leak = page.evaluate(
        """() => { const d = document.createElement('div'); d.className = 'msg user';
                   document.body.appendChild(d);
                   return getComputedStyle(d).borderBottomRightRadius; }"""
    )
    assert leak == "0px", "the widget's styles stay in its shadow root"
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(page.locator("[role=log]")).to_have_attribute("aria-live", "polite")


def test_an_expired_conversation_starts_afresh(page: Page, deployment: Deployment) -> None:
    _local_only(page)
    page.goto(deployment.url + "/")
    stale = {"conversation_id": "gone", "resume_token": "x", "open": True, "streaming": True}
    page.evaluate("s => localStorage.setItem('switchboard:demo', JSON.stringify(s))", stale)
    page.reload()
    expect(page.locator(".status")).to_have_text("Online")
    _ask(page, RETURNS_Q)
    assert "30 days" in _final(page).inner_text()
    state = json.loads(page.evaluate("localStorage.getItem('switchboard:demo')"))
    assert state["conversation_id"] != "gone"
