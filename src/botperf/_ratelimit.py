"""Per-key rate limits: a GCRA token bucket of one float per key, in a bounded LRU."""

from __future__ import annotations

import math
import reprlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import final

import anyio
import anyio.lowlevel

from ._exceptions import BotperfTypeError, BotperfValueError, InvalidOptionError, RateLimitedError
from ._options import check_int_option, check_number_option, check_seconds_option

__all__ = [
    "RateLimiter",
    "RateLimiterStats",
    "check_cost",
    "check_timeout",
    "unhashable_key",
]


@final
@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """A snapshot of a `RateLimiter`'s counters since it was created.

    Every `RateLimiter.check` counts once, as admitted or limited; so does every
    `RateLimiter.acquire` that ends, admitted or timed out (a cancelled one counts
    nothing). `RateLimiter.retry_after` counts nothing.

    Attributes:
        admitted: Requests admitted (their cost consumed).
        limited: Requests refused with `RateLimitedError`.
        keys: Keys held now, at most ``max_keys``.
    """

    admitted: int
    limited: int
    keys: int


@final
class RateLimiter:
    """Admits at most ``rate`` requests per ``per`` seconds for each key, in bursts of ``burst``.

    A fresh key may make ``burst`` requests at once; after that, one more every
    ``per / rate`` seconds. It is GCRA, the token bucket written as one number per
    key (the time at which the key's bucket will be full again): `check` is O(1),
    with no timers and no background task, and nothing happens between calls.

    At most ``max_keys`` keys are held, and the least recently used go first: keys
    are kept in two generations, the keys used since the last turnover and those
    used before it; once the recent generation holds half of ``max_keys``, the
    older one is dropped whole. So a key is kept for as long as fewer than
    ``max_keys / 2`` other keys were used since its last use. A dropped key comes
    back as a fresh key, with a full burst: size ``max_keys`` well above the number
    of keys active within ``burst * per / rate`` seconds.

    Times come from ``clock``, so tests and simulations can drive it; `acquire`
    sleeps with anyio, on asyncio or trio. A RateLimiter is not thread-safe: use it
    from one thread (one event loop). See the Admission control page of the docs.

    Args:
        rate: Requests admitted per ``per`` seconds, for each key (a finite number
            above 0).
        per: The period, in seconds (a finite number above 0).
        burst: How many requests a fresh key (or one idle for long enough) may make at
            once, the bucket's size: a finite number of at least 1. By default
            ``rate``, or 1 if ``rate`` is below 1.
        max_keys: How many keys are held at most (an int of at least 1).
        clock: Returns the time in seconds, as `time.monotonic` does (the default).

    Raises:
        InvalidOptionError: If an option is of the wrong type or out of its range
            (booleans, NaN and infinities included).
    """

    __slots__ = (
        "_admitted",
        "_burst",
        "_clock",
        "_epoch",
        "_generation",
        "_interval",
        "_limited",
        "_max_keys",
        "_older",
        "_recent",
        "_tau",
    )

    def __init__(
        self,
        rate: float,
        per: float,
        *,
        burst: float | None = None,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        rate = check_number_option("RateLimiter", "rate", rate)
        per = check_seconds_option("RateLimiter", "per", per)
        if burst is None:
            burst = max(rate, 1.0)
        else:
            burst = check_number_option("RateLimiter", "burst", burst, minimum=1.0)
        max_keys = check_int_option("RateLimiter", "max_keys", max_keys, minimum=1)
        if not callable(clock):
            raise InvalidOptionError(
                "RateLimiter", "clock", clock, "a function returning seconds, as time.monotonic"
            )
        self._interval = per / rate
        self._burst = burst
        # A request is admitted while the bucket's full time stays within tau of now.
        self._tau = self._interval * burst
        self._max_keys = max_keys
        self._generation = max(1, max_keys // 2)
        self._clock = clock
        # Times are kept relative to the start, where floats are dense: at a clock of
        # 1e9 (Unix time) they would round to a few hundred nanoseconds.
        self._epoch = clock()
        # Each key's theoretical arrival time: when its bucket will be full again. Two
        # plain dicts rather than one OrderedDict: a check on a recent key then costs
        # what a bare dict of floats does.
        self._recent: dict[Hashable, float] = {}
        self._older: dict[Hashable, float] = {}
        self._admitted = 0
        self._limited = 0

    @property
    def stats(self) -> RateLimiterStats:
        """The counters now (a new snapshot at each access)."""
        return RateLimiterStats(self._admitted, self._limited, len(self._recent) + len(self._older))

    def check(self, key: Hashable, cost: float = 1) -> None:
        """Admit a request for ``key`` now, consuming ``cost`` units, or refuse it.

        O(1), synchronous. A refused request consumes nothing.

        Args:
            key: Whose budget the request is charged to (any hashable value).
            cost: How many units the request consumes (a finite number above 0, at
                most ``burst``).

        Raises:
            RateLimitedError: If the key's budget does not allow it now; its
                ``retry_after`` is what `retry_after` returns at this moment.
            TypeError: If ``key`` is not hashable, or ``cost`` not a number.
            ValueError: If ``cost`` is not above 0 or is above ``burst``, so that it
                could never be admitted.
        """
        interval = self._interval if cost == 1 else self._cost_interval(cost, "check")
        now = self._clock() - self._epoch
        recent = self._recent
        try:
            tat = recent.get(key)
        except TypeError:
            raise unhashable_key(key, "RateLimiter.check") from None
        if tat is None:
            tat = self._revive(key, now)
            recent = self._recent  # a new generation may have begun
        full = (tat if tat > now else now) + interval
        if full - now > self._tau:
            wait = self._wait(full, now)
            if wait:
                self._limited += 1
                raise RateLimitedError(key, wait)
        recent[key] = full
        self._admitted += 1

    def retry_after(self, key: Hashable, cost: float = 1) -> float:
        """Seconds until a request for ``key`` costing ``cost`` would be admitted.

        ``0.0`` if it would be admitted now. Consumes nothing, counts nothing and
        does not mark the key as recently used.

        Raises:
            TypeError: If ``key`` is not hashable, or ``cost`` not a number.
            ValueError: If ``cost`` is not above 0 or is above ``burst``.
        """
        interval = self._interval if cost == 1 else self._cost_interval(cost, "retry_after")
        now = self._clock() - self._epoch
        try:
            tat = self._recent.get(key)
        except TypeError:
            raise unhashable_key(key, "RateLimiter.retry_after") from None
        if tat is None:
            tat = self._older.get(key, now)
        return self._wait((tat if tat > now else now) + interval, now)

    async def acquire(
        self,
        key: Hashable,
        cost: float = 1,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (fails fast, which fail_after cannot)
    ) -> None:
        """Wait until a request for ``key`` is admitted, then consume ``cost`` units.

        Sleeps (anyio) until the key's budget allows the request. Cancelling it
        consumes nothing. Waiters are not queued: several tasks waiting on one key
        are admitted in no particular order (use `FairLimiter` for a queue). The
        sleeps assume that ``clock`` advances as real time does.

        Args:
            key: As for `check`.
            cost: As for `check`.
            timeout: Seconds to wait at most (0 or more), or ``None`` to wait as long
                as it takes. A request that could not be admitted within it raises at
                once, without sleeping in vain: a key's admission time can only move
                later.

        Raises:
            RateLimitedError: If the request cannot be admitted within ``timeout``;
                ``retry_after`` says when it could be.
            TypeError: If ``key`` is not hashable, or ``cost`` or ``timeout`` not a
                number.
            ValueError: If ``cost`` is out of range (as for `check`) or ``timeout``
                is negative or NaN.
        """
        interval = self._interval if cost == 1 else self._cost_interval(cost, "acquire")
        limit = None if timeout is None else check_timeout(timeout)
        deadline = None if limit is None else self._clock() - self._epoch + limit
        try:
            hash(key)
        except TypeError:
            raise unhashable_key(key, "RateLimiter.acquire") from None
        await anyio.lowlevel.checkpoint()
        while True:
            now = self._clock() - self._epoch
            tat = self._recent.get(key)
            if tat is None:
                tat = self._revive(key, now)
            full = (tat if tat > now else now) + interval
            wait = self._wait(full, now)
            if not wait:
                self._recent[key] = full
                self._admitted += 1
                return
            if deadline is not None and now + wait > deadline:
                self._limited += 1
                raise RateLimitedError(key, wait)
            await anyio.sleep(wait)

    def _revive(self, key: Hashable, now: float) -> float:
        """Move ``key`` into the recent generation; its stored time, or ``now`` if fresh."""
        tat = self._older.pop(key, now)
        recent = self._recent
        if len(recent) >= self._generation:
            # With max_keys == 1 there is room for one key only: keep no older generation.
            self._older = recent if self._max_keys > 1 else {}
            recent = self._recent = {}
        recent[key] = tat
        return tat

    def _wait(self, tat: float, now: float) -> float:
        """Seconds until a request that makes the bucket full at ``tat`` fits; 0.0 if now.

        Within a tolerance: a few float roundings of the clock's magnitude, and a
        billionth of an interval, so that a time floats cannot represent exactly
        (a rate of 3 per second) never costs a unit of a burst.
        """
        excess = tat - now - self._tau
        if excess <= 0.0:
            return 0.0
        # The clock's own readings round at its magnitude, not at the relative time's.
        magnitude = max(abs(tat), abs(now), self._tau) + abs(self._epoch)
        slack = 1e-9 * self._interval + 8 * math.ulp(magnitude)
        return 0.0 if excess <= slack else excess

    def _cost_interval(self, cost: object, method: str) -> float:
        """The time ``cost`` units take to refill, after checking it could ever be admitted."""
        return self._interval * check_cost(cost, self._burst, f"RateLimiter.{method}")


def check_cost(cost: object, burst: float, where: str) -> float:
    """Return ``cost`` as a float if it is a number above 0 and at most ``burst``.

    Raises:
        TypeError: If it is not a number (booleans included).
        ValueError: If it is not above 0 or is above ``burst`` (NaN included), so that
            it could never be admitted.
    """
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        raise BotperfTypeError(
            f"{where}(cost={cost!r}): cost must be a number of units, such as 1 or 2.5"
        )
    if not 0 < cost <= burst:  # NaN fails too
        raise BotperfValueError(
            f"{where}(cost={cost!r}): cost must be above 0 and at most burst={burst:g}, "
            "or it could never be admitted; raise burst, or split the request"
        )
    return float(cost)


def check_timeout(timeout: object) -> float:
    """Return a call's ``timeout`` as a float, if it is a number of seconds of 0 or more."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise BotperfTypeError(f"timeout={timeout!r}: timeout must be None or a number of seconds")
    if not timeout >= 0:  # NaN fails too
        raise BotperfValueError(f"timeout={timeout!r}: timeout must be None or 0 seconds or more")
    return float(timeout)


def unhashable_key(key: object, where: str) -> TypeError:
    """The error for a key a limiter cannot hold, saying what to use instead."""
    return BotperfTypeError(
        f"{where}: the key {reprlib.repr(key)} is not hashable ({type(key).__name__}); "
        "key by a str, an int or a tuple of them, such as a user id"
    )
