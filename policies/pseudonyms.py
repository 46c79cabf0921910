"""Reversible pseudonyms (`pii.operator: pseudonym`): stable per conversation, kept encrypted.

Within one conversation the same value always becomes the same tag (`<PERSON_3fa2c1>`), so the
model can tell two customers or two cards apart; the next conversation gets other tags, so
tags do not link conversations. Tags are an HMAC of (conversation, type, value) under a key
derived from the vault key. The real values are kept in the conversation's vault — a Redis
hash of tag -> Fernet ciphertext, expiring with the conversation — and only `reveal` (for a
human agent, where the policy's `reveal_to_agents` allows) turns tags back into values. Redis
never holds a value in clear, and the key never goes to Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from dataclasses import replace
from typing import Any

from bot.errors import ConfigError
from policies.pii import Redaction, Redactor, splice
from policies.pii_rules import VAULT_KEY_ENV, PiiPolicy


def check_key(key: str) -> None:
    """Refuse a missing or malformed vault key with what to do."""
    from cryptography.fernet import Fernet

    if not key:
        raise ConfigError(
            f"pii.operator pseudonym needs a vault key: set ${VAULT_KEY_ENV} to a Fernet key "
            '(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key())")'
        )
    try:
        Fernet(key.encode())
    except ValueError as exc:
        raise ConfigError(f"${VAULT_KEY_ENV} is not a Fernet key: {exc}") from exc


class Pseudonymizer:
    """Tags for values, per conversation; remembers the (tag, value) pairs it hands out until
    `take` collects them for the vault. Thread-safe."""

    def __init__(self, policy: PiiPolicy, key: str) -> None:
        check_key(key)
        self._policy = policy
        self._secret = hashlib.sha256(b"switchboard-pseudonym\0" + key.encode()).digest()
        self._pending: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def tag(self, conversation: str, entity_type: str, value: str) -> str:
        message = "\0".join((conversation, entity_type, value.strip())).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:6]
        tag = self._policy.replacement.format(entity_type=f"{entity_type}_{digest}")
        with self._lock:
            self._pending.setdefault(conversation, {})[tag] = value
        return tag

    def take(self) -> dict[str, dict[str, str]]:
        """The pairs handed out since the last call, by conversation (then forgotten)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def redactor(self, inner: Redactor, conversation: str) -> Redactor:
        """`inner`, with each replacement a tag of this conversation."""
        return _ConversationRedactor(inner, self, conversation)


class _ConversationRedactor:
    def __init__(self, inner: Redactor, names: Pseudonymizer, conversation: str) -> None:
        self._inner, self._names, self._conversation = inner, names, conversation

    def warm_up(self) -> None:
        self._inner.warm_up()

    def redact(self, text: str) -> Redaction:
        found = [
            replace(
                item,
                replacement=self._names.tag(
                    self._conversation, item.entity_type, text[item.start : item.end]
                ),
            )
            for item in self._inner.redact(text).entities
        ]
        return Redaction(splice(text, found), tuple(found))


class PseudonymVault:
    """The conversations' real values, encrypted in Redis, for `reveal` to a human agent."""

    def __init__(
        self, redis: Any, policy: PiiPolicy, key: str, ttl_s: int, prefix: str = "switchboard:"
    ) -> None:
        from cryptography.fernet import Fernet

        check_key(key)
        before, after = policy.replacement.split("{entity_type}", 1)
        # What `Pseudonymizer.tag` writes: the template around TYPE_6hex.
        self._tag = re.compile(
            re.escape(before) + r"[A-Z][A-Z0-9_]*_[0-9a-f]{6}" + re.escape(after)
        )
        self._redis = redis
        self._fernet = Fernet(key.encode())
        self._ttl = ttl_s
        self._prefix = prefix

    def _key(self, conversation: str) -> str:
        return f"{self._prefix}vault:{conversation}"

    async def keep(self, pending: dict[str, dict[str, str]]) -> None:
        """Store each conversation's new (tag, value) pairs, encrypted."""
        for conversation, pairs in pending.items():
            if not conversation or not pairs:
                continue
            encrypted = {tag: self._fernet.encrypt(value.encode()) for tag, value in pairs.items()}
            key = self._key(conversation)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=encrypted)
                pipe.expire(key, self._ttl)
                await pipe.execute()

    async def reveal(self, conversation: str, text: str) -> str:
        """`text` with this conversation's tags replaced by the values they stand for
        (tags the vault does not know stay as they are)."""
        tags = set(self._tag.findall(text))
        if not tags:
            return text
        stored = await self._redis.hmget(self._key(conversation), sorted(tags))
        values = {
            tag: self._fernet.decrypt(token).decode()
            for tag, token in zip(sorted(tags), stored, strict=True)
            if token is not None
        }
        return self._tag.sub(lambda m: values.get(m.group(), m.group()), text)
