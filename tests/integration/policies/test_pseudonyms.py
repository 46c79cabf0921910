"""`pii.operator: pseudonym`: stable tags per conversation, real values encrypted in Redis,
revealed only to a human agent where the policy allows."""

from __future__ import annotations

import re

import pytest
import redis
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from bot.errors import ConfigError
from policies.base import Context
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.pii_rules import VAULT_KEY_ENV
from policies.schema import parse_policy
from policies.verdicts import Allow

pytestmark = pytest.mark.integration

POLICY = """\
version: 1
pii:
  operator: pseudonym
  reveal_to_agents: {reveal}
stages:
  input: [pii]
"""
TAG = re.compile(r"<EMAIL_ADDRESS_[0-9a-f]{6}>")


@pytest.fixture
def vault_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(VAULT_KEY_ENV, key)
    return key


def engine(aredis: aioredis.Redis | None, reveal: bool = True) -> PolicyEngine:
    policy = parse_policy(POLICY.format(reveal=str(reveal).lower()))
    built = PolicyEngine(policy, PatternRedactor(policy.pii), redis=aredis)
    built.warm_up()
    return built


def ctx(conversation: str) -> Context:
    return Context("input", conversation=conversation)


async def test_same_value_gets_one_tag_per_conversation_and_another_in_the_next(
    vault_key: str, aredis: aioredis.Redis
) -> None:
    policies = engine(aredis)
    first = await policies.check_input("I'm jo@example.com", ctx("c1"))
    again = await policies.check_input("write to jo@example.com or al@example.com", ctx("c1"))
    other = await policies.check_input("I'm jo@example.com", ctx("c2"))
    policies.close()
    assert isinstance(first, Allow) and isinstance(again, Allow) and isinstance(other, Allow)
    (tag,) = TAG.findall(first.text)
    assert TAG.findall(again.text)[0] == tag and TAG.findall(again.text)[1] != tag
    assert TAG.findall(other.text)[0] != tag  # tags do not link conversations


async def test_vault_holds_only_ciphertext_and_reveals_to_agents_when_allowed(
    vault_key: str, aredis: aioredis.Redis, clean_redis: redis.Redis
) -> None:
    policies = engine(aredis)
    verdict = await policies.check_input("card for jo@example.com please", ctx("c1"))
    stored = await policies.redact_for_storage("card for jo@example.com please", ctx("c1"))
    assert isinstance(verdict, Allow) and stored == verdict.text
    dump = repr({k: clean_redis.hgetall(k) for k in clean_redis.keys("*vault*")})
    assert "vault:c1" in dump and "jo@example.com" not in dump
    assert await policies.reveal("c1", stored) == "card for jo@example.com please"
    assert await policies.reveal("c2", stored) == stored  # another conversation's vault
    policies.close()


async def test_streamed_answer_uses_the_conversations_tags_when_it_repeats_a_value(
    vault_key: str, aredis: aioredis.Redis
) -> None:
    policies = engine(aredis)
    verdict = await policies.check_input("I'm jo@example.com", ctx("c1"))
    assert isinstance(verdict, Allow)
    output = policies.output_filter(Context("output", conversation="c1"))
    shown = await policies.feed(output, "We wrote to jo@exa")
    shown += await policies.feed(output, "mple.com. ")
    shown += await policies.flush(output)
    policies.close()
    assert TAG.findall(shown) == TAG.findall(verdict.text)


async def test_reveal_is_refused_when_the_policy_does_not_allow_it(
    vault_key: str, aredis: aioredis.Redis
) -> None:
    policies = engine(aredis, reveal=False)
    await policies.check_input("I'm jo@example.com", ctx("c1"))
    with pytest.raises(PermissionError, match="reveal_to_agents"):
        await policies.reveal("c1", "<EMAIL_ADDRESS_000000>")
    policies.close()


def test_start_is_refused_naming_the_setting_when_there_is_no_vault_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(VAULT_KEY_ENV, raising=False)
    policy = parse_policy(POLICY.format(reveal="true"))
    with pytest.raises(ConfigError, match=VAULT_KEY_ENV):
        PolicyEngine(policy, PatternRedactor(policy.pii)).warm_up()
    monkeypatch.setenv(VAULT_KEY_ENV, "not-a-key")
    with pytest.raises(ConfigError, match="not a Fernet key"):
        PolicyEngine(policy, PatternRedactor(policy.pii)).warm_up()
