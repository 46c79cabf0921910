"""Fixtures shared by every suite: real Redis, a tiny model, the demo knowledge index."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# Presidio's email recognizer uses tldextract, which fetches a suffix list unless told not to.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
DEMO_KB = ROOT / "demo" / "kb"
TEST_REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (a dedicated DB index). The suite fails loudly if it is not running."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(
            f"Redis is not reachable at {TEST_REDIS_URL} ({exc}); start redis-server "
            "or set SWITCHBOARD_TEST_REDIS_URL"
        )
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on the test DB, flushed before and after the test."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
async def aredis(clean_redis: redis.Redis, redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo help center, indexed with the real MiniLM embeddings."""
    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.ingest import ingest

    target = tmp_path_factory.mktemp("demo-index") / "index"
    ingest(DEMO_KB, target, MiniLMEmbedder(), progress=False)
    return target
