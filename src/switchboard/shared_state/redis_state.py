"""Shared state in Redis (`shared_state.url: redis://...`): limits and budgets across instances.

Every operation is one atomic command or Lua script (no read-modify-write from Python): a `lease`
of any number of counters is one EVALSHA, one round trip. Buckets use Redis's clock (`TIME`) so
instances with skewed clocks agree. All keys live under `shared_state.key_prefix`. A lease touches
several keys, so a Redis Cluster would need them in one hash slot; a single Redis (or a replicated
primary) is what this targets. The `redis` package is an optional extra, imported only when configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Grant, LeaseRequest

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisState"]

# KEYS: the counters. ARGV: 8 values per counter: budget (1) or bucket (0), limit, rate, settle, want,
# need, ttl in ms (budgets; 0: none), seed (budgets; "": none). See shared_state.base for the meaning.
# Returns {granted1, level1, granted2, level2, ...} as strings (Lua numbers would become integers);
# granted is "-1" for a budget that does not exist and had no seed (nothing was done to it).
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local level, spent, existed = {}, {}, {}
local allowed = true
for i, key in ipairs(KEYS) do
  local o = i * 8 - 8
  local limit = tonumber(ARGV[o + 2])
  local settle = tonumber(ARGV[o + 4])
  local want = tonumber(ARGV[o + 5])
  if ARGV[o + 1] == '1' then
    local v = tonumber(redis.call('GET', key))
    existed[i] = v ~= nil
    if v == nil then v = tonumber(ARGV[o + 8]) end
    if v ~= nil then
      spent[i] = v + settle
      level[i] = limit - spent[i]
      if want > 0 and level[i] <= 0 then allowed = false end
    elseif want > 0 then
      allowed = false
    end
  else
    local h = redis.call('HMGET', key, 'tokens', 'ts')
    local tokens = tonumber(h[1])
    local ts = tonumber(h[2])
    if tokens == nil then tokens = limit; ts = now end
    level[i] = math.min(limit, tokens + math.max(0, now - ts) * tonumber(ARGV[o + 3])) - settle
    if want > 0 and level[i] < tonumber(ARGV[o + 6]) then allowed = false end
  end
end
local out = {}
for i, key in ipairs(KEYS) do
  local o = i * 8 - 8
  local want = tonumber(ARGV[o + 5])
  local grant = 0
  if level[i] == nil then
    out[i * 2 - 1] = '-1'
    out[i * 2] = '0'
  else
    if ARGV[o + 1] == '1' then
      if allowed and want > 0 then grant = math.min(want, level[i]) end
      local value = string.format('%.17g', spent[i] + grant)
      local ttl = tonumber(ARGV[o + 7])
      if existed[i] then
        redis.call('SET', key, value, 'KEEPTTL')
      elseif ttl > 0 then
        redis.call('SET', key, value, 'PX', ttl)
      else
        redis.call('SET', key, value)
      end
    else
      if allowed and want > 0 then grant = math.min(want, math.floor(level[i])) end
      local rate = tonumber(ARGV[o + 3])
      local tokens = level[i] - grant
      redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
      redis.call('PEXPIRE', key, math.ceil((tonumber(ARGV[o + 2]) - tokens) / rate * 1000) + 1000)
    end
    out[i * 2 - 1] = string.format('%.17g', grant)
    out[i * 2] = string.format('%.17g', level[i] - grant)
  end
end
return out
"""


class RedisState:
    def __init__(self, url: str, prefix: str, timeout_s: float = 0.25) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._redis: Redis | None = None
        self._lease: Any = None

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
        self._lease = self._redis.register_script(_LEASE)
        await self._redis.ping()

    async def aclose(self) -> None:
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[Grant]:
        args: list[float | str] = []
        for r in requests:
            args += (1 if r.budget else 0, r.limit, r.rate, r.settle, r.want, r.need,
                     int(r.ttl_s * 1000) if r.ttl_s else 0, "" if r.seed is None else r.seed)
        out = await self._lease(keys=[self.prefix + r.key for r in requests], args=args, client=self.redis)
        return [Grant(0.0, 0.0, absent=True) if out[i] == "-1" else Grant(float(out[i]), float(out[i + 1]))
                for i in range(0, len(out), 2)]

    async def mark(self, key: str, ttl_s: float) -> None:
        await self.redis.set(self.prefix + key, 1, px=max(1, int(ttl_s * 1000)))

    async def marked(self, key: str) -> float:
        ttl = await self.redis.pttl(self.prefix + key)
        return max(0.0, ttl / 1000) if ttl > 0 else 0.0
