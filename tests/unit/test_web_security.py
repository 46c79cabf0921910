"""Widget tokens, resume tokens, the per-connection rate limit, and the event log's rules."""

from __future__ import annotations

import pytest

from bot.events import Event, InMemoryEventLog, open_turn
from bot.settings import SiteSettings, WebSettings
from connectors.web.security import Denied, Signer, TokenBucket, same_origin
from connectors.web.turns import replay_start

SHOP = "https://shop.example.com"
SETTINGS = WebSettings(sites={"shop": SiteSettings(origins=[SHOP]), "demo": SiteSettings()})


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _signer(clock: Clock | None = None, secret: bytes = b"s" * 32) -> Signer:
    return Signer(secret, SETTINGS, clock or Clock())


def test_widget_token_is_accepted_from_its_origin_until_it_expires() -> None:
    clock = Clock()
    signer = _signer(clock)
    token, ttl = signer.widget_token("shop", SHOP, "api.example.com")
    assert ttl == SETTINGS.token_ttl_s
    grant = signer.check_widget_token(token, SHOP, "api.example.com")
    assert (grant.site, grant.origin) == ("shop", SHOP)
    clock.now += ttl + 1
    with pytest.raises(Denied, match="expired"):
        signer.check_widget_token(token, SHOP, "api.example.com")


@pytest.mark.parametrize(
    ("site", "origin", "host", "reason"),
    [
        ("shop", "https://evil.example.com", "api.example.com", "may not use site key"),
        ("nope", SHOP, "api.example.com", "unknown site key"),
        ("demo", "https://shop.example.com", "api.example.com", "may not use site key"),
    ],
)
def test_widget_token_is_refused_for_other_origins_and_unknown_sites(
    site: str, origin: str, host: str, reason: str
) -> None:
    with pytest.raises(Denied, match=reason):
        _signer().widget_token(site, origin, host)


def test_the_servers_own_origin_may_use_the_demo_key() -> None:
    token, _ = _signer().widget_token("demo", "http://127.0.0.1:8000", "127.0.0.1:8000")
    assert _signer().check_widget_token(token, "http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("https://api.example.com", "api.example.com")
    assert not same_origin("https://api.example.com.evil.io", "api.example.com")


def test_widget_token_is_refused_when_tampered_replayed_elsewhere_or_signed_by_another() -> None:
    signer = _signer()
    token, _ = signer.widget_token("shop", SHOP, "h")
    body, mac = token.split(".")
    with pytest.raises(Denied, match="signature"):
        signer.check_widget_token(body[:-2] + "xx." + mac, SHOP, "h")
    with pytest.raises(Denied, match="issued to"):
        signer.check_widget_token(token, "https://other.example.com", "h")
    with pytest.raises(Denied, match="signature"):
        _signer(secret=b"t" * 32).check_widget_token(token, SHOP, "h")
    with pytest.raises(Denied, match="malformed"):
        signer.check_widget_token("garbage", SHOP, "h")


def test_resume_token_opens_only_its_own_conversation() -> None:
    signer = _signer()
    token = signer.resume_token("c1")
    assert signer.check_resume_token("c1", token)
    assert not signer.check_resume_token("c2", token)
    assert not signer.check_resume_token("c1", None)
    assert not _signer(secret=b"t" * 32).check_resume_token("c1", token)


def test_user_id_hides_the_email_and_is_stable() -> None:
    signer = _signer()
    uid = signer.user_id(" Jane@Example.com ")
    assert uid == signer.user_id("jane@example.com")
    assert "jane" not in uid.lower()


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock(0.0)
    bucket = TokenBucket(per_minute=60, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.take() == 0.0


def test_origins_must_be_origins() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        SiteSettings(origins=["https://shop.example.com/path"])
    assert SiteSettings(origins=["HTTPS://Shop.Example.com/"]).origins == [SHOP]


def _e(seq: int, kind: str, **extra: object) -> Event:
    return Event(seq, {"type": kind, **extra})


def test_open_turn_is_the_last_accepted_message_without_a_final_answer() -> None:
    done = [_e(1, "accepted", id="u1"), _e(2, "token", text="a"), _e(3, "message", id="a1")]
    assert open_turn(done) is None
    running = [*done, _e(4, "accepted", id="u2"), _e(5, "token", text="b")]
    turn = open_turn(running)
    assert turn is not None and turn[0].seq == 4 and [e.seq for e in turn[1]] == [5]
    assert open_turn([*running, _e(6, "error", code="x")]) is None
    assert replay_start(turn, running, ["u1", "a1", "u2"]) == 4, "its tokens are replayed"
    # The answer is stored already though its final event is not logged yet: no replay.
    assert replay_start(turn, running, ["u1", "a1", "u2", "a2"]) == 5
    assert replay_start(None, done, ["u1", "a1"]) == 3


async def test_in_memory_event_log_numbers_events_and_wakes_waiters() -> None:
    log = InMemoryEventLog(max_events=3)
    assert await log.wait("c", 0, 0.01) == []
    for i in range(4):
        assert await log.append("c", {"type": "token", "text": str(i)}) == i + 1
    assert [e.seq for e in await log.since("c", 0)] == [2, 3, 4], "capped, oldest dropped"
    assert [e.frame["text"] for e in await log.wait("c", 3, 1.0)] == ["3"]
