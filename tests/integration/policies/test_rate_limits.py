"""Rate limits in real Redis: a sliding window per user and per IP, shared by every replica."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from policies.base import Context
from policies.engine import PolicyEngine
from policies.limits import LimitRules, RateLimit, RateLimiter
from policies.pii import PatternRedactor
from policies.schema import parse_policy
from policies.verdicts import Allow, Block

pytestmark = pytest.mark.integration


def ctx(user: str = "u1", ip: str = "") -> Context:
    return Context("input", channel="web", conversation="c1", user=user, ip=ip)


async def test_user_is_limited_when_over_the_window_and_others_are_not(
    aredis: aioredis.Redis, clean_redis: redis.Redis
) -> None:
    limiter = RateLimiter(LimitRules(per_user=RateLimit(requests=3, window_s=60)), aredis)
    verdicts = [await limiter.check(ctx()) for _ in range(5)]
    assert [type(v).__name__ for v in verdicts] == ["Allow"] * 3 + ["Block"] * 2
    blocked = verdicts[-1]
    assert isinstance(blocked, Block) and blocked.reply == LimitRules().reply
    assert [(f.rule, f.action) for f in blocked.findings] == [("rate:per_user", "block")]
    assert isinstance(await limiter.check(ctx(user="u2")), Allow)
    # The key holds a hash, never the user id itself.
    keys = clean_redis.keys("*")
    assert keys and not any("u1" in key for key in keys)


async def test_window_slides_when_time_passes(aredis: aioredis.Redis) -> None:
    limiter = RateLimiter(LimitRules(per_user=RateLimit(requests=2, window_s=1)), aredis)
    assert [isinstance(await limiter.check(ctx()), Allow) for _ in range(3)] == [True, True, False]
    await asyncio.sleep(1.1)
    assert isinstance(await limiter.check(ctx()), Allow)


async def test_two_replicas_share_the_count_when_they_use_one_redis(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    rules = LimitRules(per_user=None, per_ip=RateLimit(requests=4, window_s=60))
    other = aioredis.Redis.from_url(redis_url)
    first, second = RateLimiter(rules, aredis), RateLimiter(rules, other)
    results = await asyncio.gather(
        *(limiter.check(ctx(ip="10.0.0.9")) for limiter in [first, second] * 4)
    )
    await other.aclose()
    assert sum(isinstance(v, Allow) for v in results) == 4


async def test_message_goes_through_when_redis_is_unreachable() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    limiter = RateLimiter(LimitRules(), dead)
    verdict = await limiter.check(ctx())
    await dead.aclose()
    assert isinstance(verdict, Allow)
    assert [(f.rule, f.action) for f in verdict.findings] == [("rate:per_user", "error")]


async def test_engine_applies_rate_limits_before_the_stages_when_checking_input(
    aredis: aioredis.Redis,
) -> None:
    policy = parse_policy(
        "version: 1\nlimits:\n  per_user: {requests: 1, window_s: 60}\n"
        "channels:\n  slack:\n    limits:\n      per_user: {requests: 3, window_s: 60}\n"
    )
    engine = PolicyEngine(policy, PatternRedactor(), redis=aredis)
    engine.warm_up()
    web = [await engine.check_input("hi", ctx()) for _ in range(2)]
    slack_ctx = Context("input", channel="slack", user="s1")
    slack = [await engine.check_input("hi", slack_ctx) for _ in range(4)]
    engine.close()
    assert [isinstance(v, Block) for v in web] == [False, True]
    assert [isinstance(v, Block) for v in slack] == [False, False, False, True]
    assert engine.audit.counts()[("input", "limits", "rate:per_user", "block")] == 2
