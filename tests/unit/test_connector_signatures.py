"""Request signatures: Slack's signing-secret scheme and the webhook `t=..,v1=..` header."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import httpx
import pytest
from starlette.datastructures import Headers

from connectors.slack import signature as slack
from connectors.webhook import signature as webhook

# Slack's own example, from "Verifying requests from Slack".
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
    b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

T = 1_700_000_000
BODY = b'{"event":"message","text":"hello"}'
OLD, NEW, OTHER = "old-secret", "new-secret", "someone-elses-secret"


def _at(t: float) -> Callable[[], float]:
    return lambda: t


def _slack_headers(
    timestamp: str | None = str(SLACK_TS), signature: str | None = SLACK_SIG
) -> dict[str, str]:
    headers = {}
    if timestamp is not None:
        headers["x-slack-request-timestamp"] = timestamp
    if signature is not None:
        headers["x-slack-signature"] = signature
    return headers


# --- Slack ------------------------------------------------------------------------------


def test_slack_signature_matches_slacks_published_example() -> None:
    assert slack.slack_signature(SLACK_SECRET, str(SLACK_TS), SLACK_BODY) == SLACK_SIG


def test_slack_signature_is_hmac_sha256_of_v0_timestamp_body() -> None:
    digest = hmac.new(b"k", b"v0:42:abc", hashlib.sha256).hexdigest()
    assert slack.slack_signature("k", "42", b"abc") == "v0=" + digest


@pytest.mark.parametrize("k", [-300, -299, -1, 0, 0.5, 1, 60, 299, 300])
def test_slack_published_example_verifies_near_its_timestamp(k: float) -> None:
    slack.verify_slack_request(SLACK_SECRET, _slack_headers(), SLACK_BODY, now=lambda: SLACK_TS + k)


@pytest.mark.parametrize("k", [-301, 301, -10_000, 10_000])
def test_slack_refuses_timestamps_more_than_300_s_away(k: int) -> None:
    with pytest.raises(slack.InvalidSignature, match="timestamp") as info:
        slack.verify_slack_request(
            SLACK_SECRET, _slack_headers(), SLACK_BODY, now=_at(SLACK_TS + k)
        )
    assert "300" in str(info.value)


def test_slack_tolerance_is_configurable() -> None:
    slack.verify_slack_request(
        SLACK_SECRET, _slack_headers(), SLACK_BODY, now=_at(SLACK_TS + 10), tolerance_s=10
    )
    with pytest.raises(slack.InvalidSignature, match="timestamp"):
        slack.verify_slack_request(
            SLACK_SECRET,
            _slack_headers(),
            SLACK_BODY,
            now=_at(SLACK_TS + 11),
            tolerance_s=10,
        )


@pytest.mark.parametrize(
    "headers",
    [
        _slack_headers(timestamp=None),
        _slack_headers(signature=None),
        _slack_headers(timestamp=None, signature=None),
        _slack_headers(timestamp=""),
        _slack_headers(signature=""),
        {},
    ],
    ids=["no-timestamp", "no-signature", "neither", "empty-timestamp", "empty-signature", "empty"],
)
def test_slack_refuses_missing_headers(headers: dict[str, str]) -> None:
    with pytest.raises(slack.InvalidSignature, match="missing"):
        slack.verify_slack_request(SLACK_SECRET, headers, SLACK_BODY, now=_at(SLACK_TS))


@pytest.mark.parametrize("timestamp", ["soon", "1531420618.0", "0x5b47b80a", "1e9", "—"])
def test_slack_refuses_a_non_numeric_timestamp(timestamp: str) -> None:
    with pytest.raises(slack.InvalidSignature, match="not a number"):
        slack.verify_slack_request(
            SLACK_SECRET, _slack_headers(timestamp=timestamp), SLACK_BODY, now=_at(SLACK_TS)
        )


@pytest.mark.parametrize("position", [0, len(SLACK_BODY) // 2, len(SLACK_BODY) - 1])
def test_slack_refuses_a_body_with_one_byte_changed(position: int) -> None:
    tampered = bytearray(SLACK_BODY)
    tampered[position] ^= 0x01
    with pytest.raises(slack.InvalidSignature, match="match"):
        slack.verify_slack_request(
            SLACK_SECRET, _slack_headers(), bytes(tampered), now=_at(SLACK_TS)
        )


def test_slack_refuses_an_extra_or_missing_byte() -> None:
    for body in (SLACK_BODY + b"&", SLACK_BODY[:-1], b""):
        with pytest.raises(slack.InvalidSignature, match="match"):
            slack.verify_slack_request(SLACK_SECRET, _slack_headers(), body, now=_at(SLACK_TS))


def test_slack_refuses_the_wrong_secret() -> None:
    for secret in ("8f742231b10e8888abcd99yyyzzz85a6", "", SLACK_SECRET.upper()):
        with pytest.raises(slack.InvalidSignature, match="match"):
            slack.verify_slack_request(secret, _slack_headers(), SLACK_BODY, now=_at(SLACK_TS))


def test_slack_refuses_a_signature_for_another_timestamp() -> None:
    # Signed for one time, sent with another (both within the tolerance).
    headers = _slack_headers(timestamp=str(SLACK_TS + 1))
    with pytest.raises(slack.InvalidSignature, match="match"):
        slack.verify_slack_request(SLACK_SECRET, headers, SLACK_BODY, now=_at(SLACK_TS))


@pytest.mark.parametrize(
    "signature",
    [
        SLACK_SIG.upper(),
        "V0=" + SLACK_SIG[3:],
        "v0=" + SLACK_SIG[3:].upper(),
        SLACK_SIG[3:],  # no prefix
        "v1=" + SLACK_SIG[3:],
        "sha256=" + SLACK_SIG[3:],
        SLACK_SIG + " ",
        " " + SLACK_SIG,
        SLACK_SIG[:-1],
        SLACK_SIG + "0",
    ],
)
def test_slack_refuses_a_signature_with_other_case_or_prefix(signature: str) -> None:
    with pytest.raises(slack.InvalidSignature, match="match"):
        slack.verify_slack_request(
            SLACK_SECRET, _slack_headers(signature=signature), SLACK_BODY, now=_at(SLACK_TS)
        )


def test_slack_accepts_case_insensitive_header_mappings() -> None:
    raw = {"X-Slack-Request-Timestamp": str(SLACK_TS), "X-SLACK-Signature": SLACK_SIG}
    for headers in (httpx.Headers(raw), Headers(headers=raw)):
        slack.verify_slack_request(SLACK_SECRET, headers, SLACK_BODY, now=_at(SLACK_TS))
    tampered = httpx.Headers({**raw, "x-slack-SIGNATURE": SLACK_SIG[:-1] + "0"})
    with pytest.raises(slack.InvalidSignature, match="match"):
        slack.verify_slack_request(SLACK_SECRET, tampered, SLACK_BODY, now=_at(SLACK_TS))
    stale = Headers(headers=raw)
    with pytest.raises(slack.InvalidSignature, match="timestamp"):
        slack.verify_slack_request(SLACK_SECRET, stale, SLACK_BODY, now=_at(SLACK_TS + 301))


def test_slack_missing_header_in_a_case_insensitive_mapping() -> None:
    headers = httpx.Headers({"X-Slack-Signature": SLACK_SIG})
    with pytest.raises(slack.InvalidSignature, match="missing"):
        slack.verify_slack_request(SLACK_SECRET, headers, SLACK_BODY, now=_at(SLACK_TS))


def test_slack_round_trip_with_a_fresh_timestamp() -> None:
    body = b'{"type":"event_callback"}'
    sig = slack.slack_signature("s3cret", str(T), body)
    headers = httpx.Headers({"X-Slack-Request-Timestamp": str(T), "X-Slack-Signature": sig})
    slack.verify_slack_request("s3cret", headers, body, now=_at(T))


# --- webhook ----------------------------------------------------------------------------


def _hand_digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_webhook_header_name() -> None:
    assert webhook.HEADER == "Switchboard-Signature"


def test_webhook_signed_string_is_t_dot_body_with_hmac_sha256() -> None:
    header = webhook.sign(BODY, [NEW], timestamp=T)
    assert header == f"t={T},v1={_hand_digest(NEW, T, BODY)}"
    expected = hmac.new(NEW.encode(), f"{T}.{BODY.decode()}".encode(), hashlib.sha256).hexdigest()
    assert header.endswith(f"v1={expected}")


def test_webhook_sign_without_a_timestamp_uses_the_clock() -> None:
    header = webhook.sign(BODY, [NEW])
    t = int(header.split(",")[0].removeprefix("t="))
    webhook.verify(header, BODY, [NEW], now=_at(t))


@pytest.mark.parametrize("k", [-300, -1, 0, 1, 299.9, 300])
def test_webhook_round_trip_with_injected_clock(k: float) -> None:
    header = webhook.sign(BODY, [NEW], timestamp=T)
    webhook.verify(header, BODY, [NEW], now=lambda: T + k)


@pytest.mark.parametrize("k", [-301, 301, -86_400, 86_400])
def test_webhook_refuses_an_expired_or_future_signature(k: int) -> None:
    header = webhook.sign(BODY, [NEW], timestamp=T)
    with pytest.raises(webhook.InvalidSignature, match="time") as info:
        webhook.verify(header, BODY, [NEW], now=_at(T + k))
    assert "300" in str(info.value)


def test_webhook_tolerance_is_configurable() -> None:
    header = webhook.sign(BODY, [NEW], timestamp=T)
    webhook.verify(header, BODY, [NEW], now=_at(T + 5), tolerance_s=5)
    with pytest.raises(webhook.InvalidSignature, match="time"):
        webhook.verify(header, BODY, [NEW], now=_at(T + 6), tolerance_s=5)


def test_webhook_header_carries_one_v1_per_secret() -> None:
    header = webhook.sign(BODY, [OLD, NEW], timestamp=T)
    assert header.split(",") == [
        f"t={T}",
        f"v1={_hand_digest(OLD, T, BODY)}",
        f"v1={_hand_digest(NEW, T, BODY)}",
    ]


@pytest.mark.parametrize(
    "configured",
    [[OLD, NEW], [NEW, OLD], [NEW], [OLD], [OTHER, OLD], [NEW, OTHER]],
)
def test_webhook_rotation_either_configured_secret_verifies(configured: list[str]) -> None:
    header = webhook.sign(BODY, [OLD, NEW], timestamp=T)
    webhook.verify(header, BODY, configured, now=_at(T))


def test_webhook_only_old_secret_configured_still_verifies() -> None:
    # Sender has rotated to (old, new); receiver still knows only the old one.
    webhook.verify(webhook.sign(BODY, [OLD, NEW], timestamp=T), BODY, [OLD], now=_at(T))
    # Sender signs with the old one only; receiver already knows both.
    webhook.verify(webhook.sign(BODY, [OLD], timestamp=T), BODY, [OLD, NEW], now=_at(T))


@pytest.mark.parametrize("configured", [[OLD], [NEW], [OLD, NEW], []])
def test_webhook_refuses_a_v1_of_an_unknown_secret(configured: list[str]) -> None:
    header = webhook.sign(BODY, [OTHER], timestamp=T)
    with pytest.raises(webhook.InvalidSignature, match="match"):
        webhook.verify(header, BODY, configured, now=_at(T))


def test_webhook_refuses_when_no_secret_is_configured() -> None:
    header = webhook.sign(BODY, [NEW], timestamp=T)
    with pytest.raises(webhook.InvalidSignature, match="match"):
        webhook.verify(header, BODY, [], now=_at(T))


@pytest.mark.parametrize("header", [None, ""])
def test_webhook_refuses_a_missing_header(header: str | None) -> None:
    with pytest.raises(webhook.InvalidSignature, match="missing") as info:
        webhook.verify(header, BODY, [NEW], now=_at(T))
    assert webhook.HEADER in str(info.value)


@pytest.mark.parametrize(
    "header",
    [
        f"v1={_hand_digest(NEW, T, BODY)}",
        f"t=,v1={_hand_digest(NEW, T, BODY)}",
        f"t=-{T},v1={_hand_digest(NEW, T, BODY)}",
        f"t={T}.0,v1={_hand_digest(NEW, T, BODY)}",
        f"t=soon,v1={_hand_digest(NEW, T, BODY)}",
        f"T={T},v1={_hand_digest(NEW, T, BODY)}",
        "garbage",
        "t",
        ",,,",
        "=",
    ],
)
def test_webhook_refuses_a_header_without_a_usable_t(header: str) -> None:
    with pytest.raises(webhook.InvalidSignature, match="no t=") as info:
        webhook.verify(header, BODY, [NEW], now=_at(T))
    assert "time" in str(info.value)


@pytest.mark.parametrize(
    "header",
    [f"t={T}", f"t={T},v1=", f"t={T},v0={_hand_digest(NEW, T, BODY)}", f"t={T},,", f"t={T},x"],
)
def test_webhook_refuses_a_header_without_v1(header: str) -> None:
    with pytest.raises(webhook.InvalidSignature, match="no v1=") as info:
        webhook.verify(header, BODY, [NEW], now=_at(T))
    assert "signature" in str(info.value)


@pytest.mark.parametrize(
    "v1",
    ["nothex", "0" * 64, _hand_digest(NEW, T, BODY).upper(), _hand_digest(NEW, T, BODY)[:-1]],
)
def test_webhook_refuses_garbage_v1(v1: str) -> None:
    with pytest.raises(webhook.InvalidSignature, match="match"):
        webhook.verify(f"t={T},v1={v1}", BODY, [NEW], now=_at(T))


def test_webhook_refuses_a_t_of_unicode_superscript_digits() -> None:
    with pytest.raises(webhook.InvalidSignature):
        webhook.verify("t=²,v1=abcd", BODY, [NEW], now=_at(T))


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1])
def test_webhook_refuses_a_body_with_one_byte_changed(position: int) -> None:
    header = webhook.sign(BODY, [OLD, NEW], timestamp=T)
    tampered = bytearray(BODY)
    tampered[position] ^= 0x01
    with pytest.raises(webhook.InvalidSignature, match="match"):
        webhook.verify(header, bytes(tampered), [OLD, NEW], now=_at(T))


def test_webhook_refuses_a_changed_timestamp() -> None:
    header = webhook.sign(BODY, [NEW], timestamp=T).replace(f"t={T}", f"t={T + 1}")
    with pytest.raises(webhook.InvalidSignature, match="match"):
        webhook.verify(header, BODY, [NEW], now=_at(T))


def test_webhook_tolerates_whitespace_after_commas() -> None:
    old, new = _hand_digest(OLD, T, BODY), _hand_digest(NEW, T, BODY)
    for header in (
        f"t={T}, v1={old}, v1={new}",
        f"t={T},  v1={new}",
        f" t={T} ,\tv1={new} ",
        f"v1={new}, t={T}",
    ):
        webhook.verify(header, BODY, [NEW], now=_at(T))
        webhook.verify(header, BODY, [OLD, NEW], now=_at(T))
