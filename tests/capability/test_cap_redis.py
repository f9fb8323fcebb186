"""Redis-backed replay cache and budget store (CISORA_TEST_REDIS_URL, default redis://127.0.0.1:6379/0)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from _cap_support import ARGS, NOW, RES, World

from capability import InvalidCapability, RedisBudgetStore, RedisReplayCache

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    url = os.environ.get("CISORA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        if os.environ.get("CISORA_TEST_REDIS_URL"):
            pytest.fail(f"CISORA_TEST_REDIS_URL is set but Redis does not answer: {exc}")
        pytest.skip(f"no Redis server answers at {url} (set CISORA_TEST_REDIS_URL): {exc}")
    prefix = f"cisora:test:{secrets.token_hex(6)}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def test_redis_replay_cache_set_nx(redis_client: Any) -> None:
    client, prefix = redis_client
    cache = RedisReplayCache(client, prefix=prefix)
    assert cache.add("n1", ttl=5, now=NOW)
    assert not cache.add("n1", ttl=5, now=NOW)
    assert 0 < client.pttl(prefix + "n1") <= 5000


def test_replay_rejected_across_replicas(redis_client: Any) -> None:
    client, prefix = redis_client
    w = World()
    token = w.root()
    pop = w.pop(w.keys[0], token)
    one = w.verifier(replay=RedisReplayCache(client, prefix=prefix))
    two = w.verifier(replay=RedisReplayCache(client, prefix=prefix))
    one.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=pop)
    with pytest.raises(InvalidCapability):
        two.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=pop)
    assert w.events[-1].reason == "pop_replayed"


def test_redis_budget_shared(redis_client: Any) -> None:
    client, prefix = redis_client
    store = RedisBudgetStore(client, prefix=prefix)
    assert [store.consume("j", limit=2, ttl=5, now=NOW) for _ in range(3)] == [True, True, False]
    w = World()
    token = w.root(budget=1)
    replicas = [w.verifier(budgets=RedisBudgetStore(client, prefix=prefix + "b:")) for _ in range(2)]
    replicas[0].verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(w.keys[0], token))
    with pytest.raises(InvalidCapability):
        replicas[1].verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(w.keys[0], token))
    assert w.events[-1].reason == "budget_exhausted"
