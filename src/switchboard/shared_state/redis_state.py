"""Shared state in Redis (`shared_state.url: redis://...`): limits and budgets across instances.

Every operation is one atomic command or Lua script (no read-modify-write from Python), and
buckets use Redis's clock (`TIME`) so instances with skewed clocks agree. All keys live under
`shared_state.key_prefix`. A multi-bucket take touches several keys, so a Redis Cluster would
need them in one hash slot; a single Redis (or a replicated primary) is what this targets.
The `redis` package is an optional extra, imported only when configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Bucket

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisState"]

# KEYS: the buckets. ARGV: per bucket capacity, rate, cost, need (4 values each).
# Returns {allowed, level1, level2, ...} with levels as strings (Lua numbers become Redis integers).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[i * 4 - 3])
  local rate = tonumber(ARGV[i * 4 - 2])
  local need = tonumber(ARGV[i * 4])
  local h = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(h[1])
  local ts = tonumber(h[2])
  if tokens == nil then tokens = cap; ts = now end
  tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
  levels[i] = tokens
  if tokens < need then allowed = 0 end
end
local out = {allowed}
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[i * 4 - 3])
  local rate = tonumber(ARGV[i * 4 - 2])
  local tokens = levels[i]
  if allowed == 1 then tokens = tokens - tonumber(ARGV[i * 4 - 1]) end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((cap - tokens) / rate * 1000) + 1000)
  out[i + 1] = tostring(tokens)
end
return out
"""

# INCRBYFLOAT that sets the TTL only when it creates the key (a period's counter must not be extended).
_ADD = """
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
"""


class RedisState:
    def __init__(self, url: str, prefix: str, timeout_s: float = 0.25) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._redis: Redis | None = None
        self._take: Any = None
        self._add: Any = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("shared state is not started")
        return self._redis

    async def start(self) -> None:
        try:
            from redis.asyncio import Redis
        except ImportError as exc:
            raise RuntimeError("shared_state.url is Redis but the redis package is not installed; "
                               "install it with: pip install 'switchboard[redis]'") from exc
        # Socket deadlines too (not only the caller's): redis-py then drops a connection that stopped answering.
        self._redis = Redis.from_url(self.url, decode_responses=True, health_check_interval=30,
                                     socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s)
        self._take = self._redis.register_script(_TAKE)
        self._add = self._redis.register_script(_ADD)
        await self._redis.ping()

    async def aclose(self) -> None:
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    async def take(self, buckets: Sequence[Bucket]) -> tuple[bool, list[float]]:
        args: list[float] = []
        for b in buckets:
            args.extend((b.capacity, b.rate, b.cost, b.need))
        out = await self._take(keys=[self.prefix + b.key for b in buckets], args=args, client=self.redis)
        return bool(int(out[0])), [float(v) for v in out[1:]]

    async def get_float(self, key: str) -> float | None:
        value = await self.redis.get(self.prefix + key)
        return None if value is None else float(value)

    async def add_float(self, key: str, amount: float, ttl_s: float | None) -> float:
        ttl_ms = int(ttl_s * 1000) if ttl_s else 0
        return float(await self._add(keys=[self.prefix + key], args=[amount, ttl_ms], client=self.redis))

    async def init_float(self, key: str, value: float, ttl_s: float | None) -> bool:
        px = int(ttl_s * 1000) if ttl_s else None
        return bool(await self.redis.set(self.prefix + key, value, nx=True, px=px))

    async def mark(self, key: str, ttl_s: float) -> None:
        await self.redis.set(self.prefix + key, 1, px=max(1, int(ttl_s * 1000)))

    async def marked(self, key: str) -> float:
        ttl = await self.redis.pttl(self.prefix + key)
        return max(0.0, ttl / 1000) if ttl > 0 else 0.0
