"""Replay caches for proof-of-possession nonces (in memory, or Redis shared across replicas).

Protocol: ``add(key, ttl=seconds, now=seconds) -> bool`` stores ``key`` for ``ttl`` seconds and returns True only
if it was not already present (an atomic "set if absent"). A cache that cannot record a key must return False:
the verifier then refuses the request (fail closed) rather than risk accepting a replay.
"""

from __future__ import annotations

import heapq
import logging
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["MemoryReplayCache", "RedisReplayCache", "ReplayCache"]

_log: Final = logging.getLogger("capability.replay")


class ReplayCache(Protocol):
    """Atomic set-if-absent with expiry."""

    def add(self, key: str, *, ttl: float, now: float) -> bool:
        """Record ``key`` until ``now + ttl``; False if it is already recorded (a replay) or cannot be recorded."""
        ...


class MemoryReplayCache:
    """Bounded in-process cache. When full of unexpired keys it refuses new ones (fail closed)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            exp, key = heapq.heappop(heap)
            if self._expiry.get(key) == exp:
                del self._expiry[key]

    def add(self, key: str, *, ttl: float, now: float) -> bool:
        """See :class:`ReplayCache`."""
        self._purge(now)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self._max:
            _log.warning("replay cache full (%d entries); refusing proof of possession", self._max)
            return False
        exp = now + ttl
        self._expiry[key] = exp
        heapq.heappush(self._heap, (exp, key))
        return True

    def __len__(self) -> int:
        return len(self._expiry)


class RedisReplayCache:
    """Shared cache: ``SET key 1 NX PX ttl`` (atomic on the server). Redis keeps its own clock for expiry."""

    def __init__(self, client: Redis, *, prefix: str = "cisora:cap:pop:") -> None:
        self._client = client
        self._prefix = prefix

    def add(self, key: str, *, ttl: float, now: float) -> bool:
        """See :class:`ReplayCache`; ``now`` is unused because Redis expires keys itself."""
        del now
        return bool(self._client.set(self._prefix + key, b"1", nx=True, px=max(1, int(ttl * 1000))))
