"""Per-key rate limits shared by every process on one Redis: GCRA in one Lua script."""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from typing import final

import anyio
from redis.asyncio import Redis
from typing_extensions import Self

from .._exceptions import RateLimitedError
from .._options import check_number_option, check_seconds_option
from .._ratelimit import check_cost, check_timeout, unhashable_key
from ._connection import Connection, check_client_options
from ._dedup import key_name
from ._errors import RedisCommandError

__all__ = ["RedisRateLimiter"]

_OWNER = "RedisRateLimiter"

# One check, atomic: the time is the server's (TIME), so the processes' clocks do not
# matter. Times are in microseconds (now is about 1.7e15, exact in a double), stored
# with 17 digits so that no rounding creeps in. KEYS[1]: the key's theoretical arrival
# time. ARGV: the interval per unit and tau (both in microseconds), the cost, and
# whether to consume. Returns {1, "0"} if admitted, else {0, microseconds to wait}.
_CHECK = """
if redis.replicate_commands then redis.replicate_commands() end
local interval, tau, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local full = tat + cost * interval
local excess = full - now - tau
-- A microsecond (TIME's resolution) and a billionth of an interval: never lose a unit
-- of a burst to rounding.
if excess > 1 + interval * 1e-9 then
    return {0, string.format('%.17g', excess)}
end
if ARGV[4] == '1' then
    -- Expires once the bucket is full again: then it is as good as a fresh key.
    local ttl = math.max(1, math.ceil((full - now) / 1000))
    redis.call('SET', KEYS[1], string.format('%.17g', full), 'PX', ttl)
end
return {1, '0'}
"""


@final
class RedisRateLimiter:
    """`RateLimiter` across processes: one budget per key for every process on one Redis.

    The semantics of `botperf.RateLimiter` (GCRA: ``burst`` requests at once, then one
    more every ``per / rate`` seconds; a refused request consumes nothing), with
    coroutines: every `check`, `retry_after` and each attempt of `acquire` is one Lua
    script, atomic and one round trip. Every process that builds a limiter on the
    same Redis with the same ``prefix``, ``rate``, ``per`` and ``burst`` shares each
    key's budget. The time is taken from the Redis server (``TIME``) inside the
    script, so the processes' clocks do not matter.

    Each key is one Redis string under ``prefix`` (followed by the key as JSON, so
    ``1`` and ``"1"`` are two keys), which expires once its bucket is full again: the
    memory Redis uses stays bounded by the keys active lately, without ``max_keys``.

    Runs on asyncio only (redis-py's asyncio client); awaiting it on trio raises
    `RedisAsyncioRequiredError`. Not thread-safe, like the client it uses.

    Args:
        redis: A ``redis.asyncio.Redis`` client (used as it is, never closed by the
            limiter), or a URL from which it builds a client with socket timeouts of
            ``timeout`` and closes it in `aclose` (or at the end of ``async with``).
        rate: As for `RateLimiter`.
        per: As for `RateLimiter`.
        burst: As for `RateLimiter`.
        prefix: The start of every key it uses (a non-empty str).
        timeout: Seconds each Redis call may take, connecting included (above 0).

    Raises:
        InvalidOptionError: If an option is of the wrong type or out of its range.
    """

    __slots__ = ("_burst", "_connection", "_interval_us", "_prefix", "_script", "_tau_us")

    def __init__(
        self,
        redis: Redis | str,
        *,
        rate: float,
        per: float,
        burst: float | None = None,
        prefix: str = "botperf:rate:",
        timeout: float = 5.0,
    ) -> None:
        rate = check_number_option(_OWNER, "rate", rate)
        per = check_seconds_option(_OWNER, "per", per)
        if burst is None:
            burst = max(rate, 1.0)
        else:
            burst = check_number_option(_OWNER, "burst", burst, minimum=1.0)
        check_client_options(_OWNER, redis, prefix, timeout, example_prefix="bot:rate:")
        self._burst = burst
        self._interval_us = per / rate * 1e6
        self._tau_us = self._interval_us * burst
        self._prefix = prefix
        self._connection = Connection(redis, timeout)
        self._script = self._connection.client.register_script(_CHECK)

    @property
    def prefix(self) -> str:
        """The start of every Redis key this limiter uses."""
        return self._prefix

    async def check(self, key: Hashable, cost: float = 1) -> None:
        """Admit a request for ``key`` now, consuming ``cost`` units, or refuse it.

        One round trip. A refused request consumes nothing.

        Raises:
            RateLimitedError: If the key's budget does not allow it now, with the
                seconds to wait in ``retry_after``.
            TypeError: If ``key`` is not hashable, or ``cost`` not a number.
            RedisKeyError: If ``key`` cannot be written as JSON.
            ValueError: If ``cost`` is not above 0 or is above ``burst``.
            RedisUnavailableError: If Redis cannot be reached or does not answer within
                ``timeout``; the request may or may not have been admitted.
            RedisCommandError: If Redis refused the script.
        """
        wait = await self._run(key, cost, consume=True, operation="check")
        if wait:
            raise RateLimitedError(key, wait)

    async def retry_after(self, key: Hashable, cost: float = 1) -> float:
        """Seconds until a request for ``key`` costing ``cost`` would be admitted; 0.0 if now.

        One round trip; consumes nothing. Raises what `check` raises, but
        `RateLimitedError`.
        """
        return await self._run(key, cost, consume=False, operation="retry_after")

    async def acquire(
        self,
        key: Hashable,
        cost: float = 1,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (fails fast, which fail_after cannot)
    ) -> None:
        """Wait until a request for ``key`` is admitted, then consume ``cost`` units.

        Tries, and sleeps for the time Redis names, until admitted. Cancelled while
        sleeping, it consumes nothing; cancelled during a round trip, the request may
        or may not have been admitted, as with any call over a network.

        Args:
            key: As for `check`.
            cost: As for `check`.
            timeout: Seconds to wait at most (0 or more), or ``None``. A request that
                could not be admitted within it raises at once, without sleeping in
                vain: a key's admission time can only move later.

        Raises:
            RateLimitedError: If it cannot be admitted within ``timeout``.
            TypeError: As for `check`, or if ``timeout`` is not a number.
            ValueError: As for `check`, or if ``timeout`` is negative or NaN.
            RedisKeyError: As for `check`.
            RedisUnavailableError: As for `check`.
            RedisCommandError: As for `check`.
        """
        deadline = None if timeout is None else time.monotonic() + check_timeout(timeout)
        while True:
            wait = await self._run(key, cost, consume=True, operation="acquire")
            if not wait:
                return
            if deadline is not None and time.monotonic() + wait > deadline:
                raise RateLimitedError(key, wait)
            await anyio.sleep(wait)

    async def _run(self, key: Hashable, cost: float, *, consume: bool, operation: str) -> float:
        """Run the script once; the seconds to wait, 0.0 if admitted (and consumed)."""
        where = f"{_OWNER}.{operation}"
        units = check_cost(cost, self._burst, where)
        try:
            hash(key)
        except TypeError:
            raise unhashable_key(key, where) from None
        name = self._prefix + key_name(key, f"{where}()")
        with self._connection.guard(where):
            reply = await self._script(
                keys=[name],
                args=[repr(self._interval_us), repr(self._tau_us), repr(units), int(consume)],
            )
        try:
            admitted, excess = reply
            wait = float(excess.decode() if isinstance(excess, bytes) else excess)
        except (TypeError, ValueError, AttributeError) as exc:
            raise RedisCommandError(where, f"the script answered {reply!r}") from exc
        if int(admitted) == 1:
            return 0.0
        # Rounded up to the microsecond Redis counts in, so that a retry then succeeds.
        return math.ceil(wait) / 1e6

    async def aclose(self) -> None:
        """Close the Redis client if the limiter built it from a URL."""
        await self._connection.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<RedisRateLimiter {self._connection.address} prefix={self._prefix!r}>"
