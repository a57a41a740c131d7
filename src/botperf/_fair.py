"""Fair slots: at most N holders at once, handed out round-robin between keys."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import final

import anyio
import anyio.lowlevel

from ._exceptions import BotperfRuntimeError, RateLimitedError
from ._options import check_int_option
from ._ratelimit import unhashable_key

__all__ = ["FairLimiter", "FairLimiterStats"]


@final
@dataclass(frozen=True, slots=True)
class FairLimiterStats:
    """A snapshot of a `FairLimiter`'s state and counters.

    Once every task using the limiter is done, ``in_use == 0`` and ``waiting == 0``,
    whatever was cancelled.

    Attributes:
        in_use: Slots held now (by tasks inside ``async with``, or handed to a
            waiter that has not resumed yet).
        waiting: Tasks waiting for a slot now.
        admitted: Times a task got a slot and entered its block.
        rejected: Requests refused at once with `RateLimitedError` because
            ``max_waiting`` tasks were already waiting.
    """

    in_use: int
    waiting: int
    admitted: int
    rejected: int


@final
class _Waiter:
    """One task waiting for a slot; ``granted`` once a released slot was handed to it."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


@final
class FairLimiter:
    """At most ``max_concurrent`` concurrent holders, shared fairly between keys.

    Guards a scarce resource such as an LLM's few parallel slots: ``async with
    limiter.slot(user_id):`` waits for a slot. When every slot is taken, waiters are
    served round-robin between keys and first come, first served within a key: the
    keys with waiters form a cycle, each released slot goes to the oldest waiter of
    the first key in the cycle that may take one, and that key moves to the end. So
    a user with 50 requests queued delays a newcomer by one slot at most, not 50, and
    one key's requests never overtake each other.

    A released slot is handed to the next waiter at once (never left free while a
    waiter could take it). A waiter cancelled while waiting leaves the queue; one
    cancelled just after a slot was handed to it passes the slot on; a holder
    cancelled inside its block releases the slot. Works on asyncio and trio (anyio).
    A FairLimiter is not thread-safe: use it from one event loop. See the Admission
    control page of the docs for the timeline.

    Args:
        max_concurrent: How many slots there are (an int of at least 1).
        max_per_key: How many slots one key may hold at once (an int of at least 1),
            or ``None`` for no limit but ``max_concurrent``.
        max_waiting: How many tasks may wait at once over all keys (an int of 0 or
            more; 0 admits only into a free slot), or ``None`` for no limit. A task
            beyond it gets `RateLimitedError` (``retry_after=None``) at once.

    Raises:
        InvalidOptionError: If an option is not an int in its range (booleans
            included).
    """

    __slots__ = (
        "_admitted",
        "_held",
        "_in_use",
        "_max_concurrent",
        "_max_per_key",
        "_max_waiting",
        "_queues",
        "_rejected",
        "_waiting",
    )

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_per_key: int | None = None,
        max_waiting: int | None = None,
    ) -> None:
        self._max_concurrent = check_int_option(
            "FairLimiter", "max_concurrent", max_concurrent, minimum=1
        )
        self._max_per_key = (
            None
            if max_per_key is None
            else check_int_option("FairLimiter", "max_per_key", max_per_key, minimum=1)
        )
        self._max_waiting = (
            None
            if max_waiting is None
            else check_int_option("FairLimiter", "max_waiting", max_waiting, minimum=0)
        )
        self._in_use = 0
        # Slots held per key; a key holding none is not in it.
        self._held: dict[Hashable, int] = {}
        # The cycle: keys with waiters, in turn order, each with its waiters oldest first
        # (OrderedDicts, so a cancelled waiter leaves in O(1)).
        self._queues: OrderedDict[Hashable, OrderedDict[_Waiter, None]] = OrderedDict()
        self._waiting = 0
        self._admitted = 0
        self._rejected = 0

    @property
    def stats(self) -> FairLimiterStats:
        """The state and counters now (a new snapshot at each access)."""
        return FairLimiterStats(self._in_use, self._waiting, self._admitted, self._rejected)

    def slot(self, key: Hashable) -> AbstractAsyncContextManager[None]:
        """An async context manager that holds one slot for ``key`` while its block runs.

        ``async with limiter.slot(key):`` waits (fairly, see the class) for a slot,
        runs the block and releases the slot, however the block ends. Entering is a
        checkpoint, as with anyio's limiters.

        Raises:
            RateLimitedError: On entering, if it would wait while ``max_waiting``
                tasks already wait (``retry_after`` is ``None``).
            TypeError: On entering, if ``key`` is not hashable.
        """
        return _Slot(self, key)

    async def _acquire(self, key: Hashable) -> None:
        held = self._held
        try:
            count = held.get(key, 0)
        except TypeError:
            raise unhashable_key(key, "FairLimiter.slot") from None
        if (
            self._in_use < self._max_concurrent
            and key not in self._queues
            and (self._max_per_key is None or count < self._max_per_key)
        ):
            self._in_use += 1
            held[key] = count + 1
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:
                self._release(key)
                raise
            self._admitted += 1
            return
        if self._max_waiting is not None and self._waiting >= self._max_waiting:
            self._rejected += 1
            raise RateLimitedError(key, None)
        waiter = _Waiter()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = OrderedDict()
        queue[waiter] = None
        self._waiting += 1
        try:
            await waiter.event.wait()
            # A task cancelled after the slot was handed to it must not enter (trio
            # resumes it normally; the slot then goes on to the next waiter below).
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            if waiter.granted:
                self._release(key)
            else:
                del queue[waiter]
                self._waiting -= 1
                if not queue:
                    del self._queues[key]
            raise
        self._admitted += 1

    def _release(self, key: Hashable) -> None:
        """Free one of ``key``'s slots: hand it to the next eligible waiter, if any."""
        held = self._held
        count = held[key] - 1
        if count:
            held[key] = count
        else:
            del held[key]
        limit = self._max_per_key
        for turn in self._queues:
            # Keys already holding max_per_key slots keep their turn for later.
            if limit is None or held.get(turn, 0) < limit:
                break
        else:
            self._in_use -= 1
            return
        queue = self._queues[turn]
        waiter, _ = queue.popitem(last=False)
        if queue:
            self._queues.move_to_end(turn)
        else:
            del self._queues[turn]
        self._waiting -= 1
        held[turn] = held.get(turn, 0) + 1
        waiter.granted = True
        waiter.event.set()


@final
class _Slot:
    """What `FairLimiter.slot` returns: ``async with`` holds one slot for its key."""

    __slots__ = ("_entered", "_key", "_limiter")

    def __init__(self, limiter: FairLimiter, key: Hashable) -> None:
        self._limiter = limiter
        self._key = key
        self._entered = False

    async def __aenter__(self) -> None:
        if self._entered:
            raise BotperfRuntimeError(
                f"this slot for {self._key!r} is already held: call limiter.slot(key) "
                "afresh for each async with block"
            )
        await self._limiter._acquire(self._key)
        self._entered = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._entered = False
        self._limiter._release(self._key)
