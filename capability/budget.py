"""Call-budget counters: each link with a ``budget`` limits the calls made through it (and its descendants).

Protocol: ``consume(key, limit=n, ttl=seconds, now=seconds) -> bool`` increments the counter for ``key`` and
returns True while the count stays within ``limit``. Counters live until the link expires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, cast

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["BudgetStore", "MemoryBudgetStore", "RedisBudgetStore"]


class BudgetStore(Protocol):
    """Atomic bounded counter."""

    def consume(self, key: str, *, limit: int, ttl: float, now: float) -> bool:
        """Count one call against ``key``; False once more than ``limit`` calls were counted."""
        ...


class MemoryBudgetStore:
    """In-process counters (per replica)."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}

    def consume(self, key: str, *, limit: int, ttl: float, now: float) -> bool:
        """See :class:`BudgetStore`."""
        count, exp = self._counts.get(key, (0, now + ttl))
        if exp <= now:
            count, exp = 0, now + ttl
        if count >= limit:
            return False
        self._counts[key] = (count + 1, exp)
        return True


_LUA: Final = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 0 end
return 1
"""


class RedisBudgetStore:
    """Counters shared across replicas (INCR + PEXPIRE in one Lua script)."""

    def __init__(self, client: Redis, *, prefix: str = "cisora:cap:budget:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    def consume(self, key: str, *, limit: int, ttl: float, now: float) -> bool:
        """See :class:`BudgetStore`."""
        del now
        result = self._script(keys=[self._prefix + key], args=[limit, max(1, int(ttl * 1000))])
        return cast("int", result) == 1
