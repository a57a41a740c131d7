"""FairLimiter: slot limits, round-robin between keys, FIFO within a key, cancellation.

Each test drives requests by hand: a request is a task that enters a slot, records
its name and waits until the test releases (or cancels) it. Between steps the test
lets every task run until all are blocked, so the order of entries is decided by
the limiter, never by timing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

import anyio
import pytest
from concurrency import all_tasks_blocked
from hypothesis import given, settings
from hypothesis import strategies as st

from botperf import FairLimiter, FairLimiterStats, InvalidOptionError, RateLimitedError

pytestmark = pytest.mark.anyio


@dataclass
class Request:
    name: str
    key: Hashable
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    release: anyio.Event = field(default_factory=anyio.Event)
    entered: bool = False
    exited: bool = False
    error: BaseException | None = None
    # Cancelled by this request's task right after it released its slot, before any
    # checkpoint: the slot has just been handed to that request.
    then_cancel: Request | None = None


class Requests:
    """Requests to one limiter, each in a task of ``task_group``."""

    def __init__(self, limiter: FairLimiter, task_group: anyio.abc.TaskGroup) -> None:
        self.limiter = limiter
        self.task_group = task_group
        self.entries: list[str] = []
        self.by_name: dict[str, Request] = {}

    async def _run(self, request: Request) -> None:
        with request.scope:
            try:
                async with self.limiter.slot(request.key):
                    request.entered = True
                    self.entries.append(request.name)
                    await request.release.wait()
            except RateLimitedError as exc:
                request.error = exc
            finally:
                request.exited = True
                if request.then_cancel is not None:
                    request.then_cancel.scope.cancel()

    async def start(self, name: str, key: Hashable) -> Request:
        request = self.by_name[name] = Request(name, key)
        self.task_group.start_soon(self._run, request)
        await all_tasks_blocked()
        return request

    async def release(self, *names: str) -> None:
        for name in names:
            self.by_name[name].release.set()
        await all_tasks_blocked()

    async def cancel(self, *names: str) -> None:
        for name in names:
            self.by_name[name].scope.cancel()
        await all_tasks_blocked()

    def holding(self) -> set[str]:
        return {r.name for r in self.by_name.values() if r.entered and not r.exited}


async def test_at_most_max_concurrent_slots_are_held() -> None:
    limiter = FairLimiter(3)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        for number in range(5):
            await requests.start(f"r{number}", number)
        assert requests.holding() == {"r0", "r1", "r2"}
        assert limiter.stats == FairLimiterStats(in_use=3, waiting=2, admitted=3, rejected=0)
        await requests.release("r1")
        assert requests.holding() == {"r0", "r2", "r3"}
        await requests.release("r0", "r2", "r3", "r4")
    assert limiter.stats == FairLimiterStats(in_use=0, waiting=0, admitted=5, rejected=0)


async def test_at_most_max_per_key_slots_per_key() -> None:
    limiter = FairLimiter(4, max_per_key=2)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        for number in range(4):
            await requests.start(f"a{number}", "a")
        await requests.start("b0", "b")
        # Two slots stay free for other keys while a's extra requests wait.
        assert requests.holding() == {"a0", "a1", "b0"}
        assert limiter.stats.in_use == 3
        await requests.release("a0")
        assert requests.holding() == {"a1", "a2", "b0"}
        await requests.release("a1", "a2", "a3", "b0")
    assert requests.entries == ["a0", "a1", "b0", "a2", "a3"]


async def test_a_newcomer_gets_one_of_the_next_two_slots_behind_a_flood() -> None:
    limiter = FairLimiter(1)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        await requests.start("a0", "a")
        for number in range(1, 51):
            await requests.start(f"a{number}", "a")
        await requests.start("b0", "b")
        await requests.release("a0")
        await requests.release(requests.entries[-1])
        assert "b0" in requests.entries[1:3]
        task_group.cancel_scope.cancel()


async def test_waiters_are_served_round_robin_between_keys() -> None:
    limiter = FairLimiter(1)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        await requests.start("hold", "x")
        for name, key in [("a0", "a"), ("a1", "a"), ("a2", "a"), ("b0", "b"), ("b1", "b")]:
            await requests.start(name, key)
        await requests.start("c0", "c")
        await requests.release("hold")
        while len(requests.entries) < 7:
            await requests.release(requests.entries[-1])
        await requests.release(requests.entries[-1])
    assert requests.entries == ["hold", "a0", "b0", "c0", "a1", "b1", "a2"]


async def test_a_keys_requests_never_overtake_each_other() -> None:
    limiter = FairLimiter(2)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        await requests.start("x", "x")
        await requests.start("y", "y")
        for number in range(6):
            await requests.start(f"a{number}", "a")
        for name in ["x", "y", "a0", "a1", "a2", "a3", "a4", "a5"]:
            await requests.release(name)
    assert [name for name in requests.entries if name.startswith("a")] == [
        f"a{number}" for number in range(6)
    ]


async def test_a_cancelled_waiter_leaves_the_queue_and_never_takes_a_slot() -> None:
    limiter = FairLimiter(1)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        await requests.start("hold", "x")
        await requests.start("a0", "a")
        await requests.start("b0", "b")
        await requests.cancel("a0")
        assert limiter.stats.waiting == 1
        await requests.release("hold")
        assert requests.holding() == {"b0"}
        await requests.release("b0")
    assert "a0" not in requests.entries
    assert limiter.stats == FairLimiterStats(in_use=0, waiting=0, admitted=2, rejected=0)


async def test_a_holder_cancelled_inside_its_block_releases_its_slot() -> None:
    limiter = FairLimiter(1)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        await requests.start("hold", "x")
        await requests.start("a0", "a")
        await requests.cancel("hold")
        assert requests.holding() == {"a0"}
        await requests.release("a0")
    assert limiter.stats == FairLimiterStats(in_use=0, waiting=0, admitted=2, rejected=0)


async def test_a_slot_handed_to_a_waiter_cancelled_at_that_moment_goes_to_the_next() -> None:
    limiter = FairLimiter(1)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        hold = await requests.start("hold", "x")
        grantee = await requests.start("a0", "a")
        await requests.start("b0", "b")
        # The slot is handed to a0, then a0 is cancelled before it could resume.
        hold.then_cancel = grantee
        await requests.release("hold")
        assert requests.holding() == {"b0"}
        assert not grantee.entered
        await requests.release("b0")
    assert requests.entries == ["hold", "b0"]
    assert limiter.stats == FairLimiterStats(in_use=0, waiting=0, admitted=2, rejected=0)


async def test_the_last_waiter_cancelled_at_handoff_leaves_the_slot_free() -> None:
    limiter = FairLimiter(1)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        hold = await requests.start("hold", "x")
        hold.then_cancel = await requests.start("a0", "a")
        await requests.release("hold")
        assert limiter.stats.in_use == 0
        await requests.start("b0", "b")
        assert requests.holding() == {"b0"}
        await requests.release("b0")


async def test_the_waiter_beyond_max_waiting_is_refused_at_once() -> None:
    limiter = FairLimiter(1, max_waiting=2)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        await requests.start("hold", "x")
        await requests.start("a0", "a")
        await requests.start("b0", "b")
        refused = await requests.start("c0", "c")
        assert refused.exited
        assert isinstance(refused.error, RateLimitedError)
        assert refused.error.retry_after is None
        assert refused.error.key == "c"
        assert "wait queue is full" in str(refused.error)
        assert limiter.stats == FairLimiterStats(in_use=1, waiting=2, admitted=1, rejected=1)
        await requests.release("hold", "a0", "b0")
    assert limiter.stats == FairLimiterStats(in_use=0, waiting=0, admitted=3, rejected=1)


async def test_max_waiting_zero_admits_only_into_a_free_slot() -> None:
    limiter = FairLimiter(1, max_waiting=0)
    async with limiter.slot("a"):
        with pytest.raises(RateLimitedError):
            async with limiter.slot("b"):
                pytest.fail("admitted without a free slot")
    async with limiter.slot("b"):
        assert limiter.stats.in_use == 1


async def test_an_uncontended_slot_is_entered_and_released() -> None:
    limiter = FairLimiter(2)
    async with limiter.slot("a"):
        assert limiter.stats == FairLimiterStats(in_use=1, waiting=0, admitted=1, rejected=0)
        async with limiter.slot("a"):
            assert limiter.stats.in_use == 2
    assert limiter.stats == FairLimiterStats(in_use=0, waiting=0, admitted=2, rejected=0)


async def test_an_already_cancelled_task_does_not_take_a_free_slot() -> None:
    limiter = FairLimiter(1)
    entered = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with limiter.slot("a"):
            entered = True
    assert not entered
    assert limiter.stats == FairLimiterStats(in_use=0, waiting=0, admitted=0, rejected=0)


async def test_an_exception_in_the_block_releases_the_slot() -> None:
    limiter = FairLimiter(1)
    with pytest.raises(ZeroDivisionError):
        async with limiter.slot("a"):
            1 / 0  # noqa: B018
    assert limiter.stats.in_use == 0


async def test_one_slot_object_cannot_be_entered_twice_at_once() -> None:
    limiter = FairLimiter(2)
    slot = limiter.slot("a")
    async with slot:
        with pytest.raises(RuntimeError, match="already held"):
            async with slot:
                pytest.fail("entered twice")
    async with slot:  # once released it may be entered again
        assert limiter.stats.in_use == 1


async def test_unhashable_key_is_a_type_error() -> None:
    limiter = FairLimiter(1)
    with pytest.raises(TypeError, match="not hashable"):
        async with limiter.slot(["a"]):  # type: ignore[arg-type]
            pytest.fail("entered")
    assert limiter.stats.in_use == 0


async def test_nothing_is_leaked_after_cancelling_everything() -> None:
    limiter = FairLimiter(2, max_per_key=1)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        for number in range(12):
            await requests.start(f"r{number}", number % 3)
        task_group.cancel_scope.cancel()
    assert limiter.stats.in_use == 0
    assert limiter.stats.waiting == 0


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": -1}, "max_concurrent"),
        ({"max_concurrent": 2.0}, "max_concurrent"),
        ({"max_concurrent": float("nan")}, "max_concurrent"),
        ({"max_concurrent": float("inf")}, "max_concurrent"),
        ({"max_concurrent": "4"}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_concurrent": 4, "max_per_key": 0}, "max_per_key"),
        ({"max_concurrent": 4, "max_per_key": 1.5}, "max_per_key"),
        ({"max_concurrent": 4, "max_per_key": True}, "max_per_key"),
        ({"max_concurrent": 4, "max_waiting": -1}, "max_waiting"),
        ({"max_concurrent": 4, "max_waiting": float("inf")}, "max_waiting"),
        ({"max_concurrent": 4, "max_waiting": False}, "max_waiting"),
    ],
)
async def test_bad_options_raise_invalid_option_error(
    options: dict[str, object], option: str
) -> None:
    with pytest.raises(InvalidOptionError, match=rf"FairLimiter\({option}=") as info:
        FairLimiter(**options)  # type: ignore[arg-type]
    assert info.value.option == option


def test_not_thread_safe_is_documented() -> None:
    assert "not thread-safe" in (FairLimiter.__doc__ or "")


class Model:
    """The fairness rule written plainly: a cycle of keys, each with a FIFO of waiters."""

    def __init__(self, max_concurrent: int, max_per_key: int | None, max_waiting: int | None):
        self.max_concurrent = max_concurrent
        self.max_per_key = max_per_key
        self.max_waiting = max_waiting
        self.holders: dict[str, int] = {}  # name -> key, in slots now
        self.cycle: list[int] = []  # keys with waiters, in turn order
        self.queues: dict[int, deque[str]] = {}
        self.entries: list[str] = []  # who entered a slot, in order
        self.rejected = 0

    def held(self, key: int) -> int:
        return sum(1 for k in self.holders.values() if k == key)

    def may_take(self, key: int) -> bool:
        return self.max_per_key is None or self.held(key) < self.max_per_key

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def arrive(self, name: str, key: int) -> None:
        free = len(self.holders) < self.max_concurrent
        if free and key not in self.queues and self.may_take(key):
            self.holders[name] = key
            self.entries.append(name)
            return
        if self.max_waiting is not None and self.waiting >= self.max_waiting:
            self.rejected += 1
            return
        if key not in self.queues:
            self.queues[key] = deque()
            self.cycle.append(key)
        self.queues[key].append(name)

    def leave(self, name: str, *, grantee_enters: bool = True) -> str | None:
        """A holder leaves (or a grantee passes its slot on); returns who gets the slot."""
        del self.holders[name]
        for key in self.cycle:
            if self.may_take(key):
                grantee = self.queues[key].popleft()
                self.cycle.remove(key)
                if self.queues[key]:
                    self.cycle.append(key)
                else:
                    del self.queues[key]
                self.holders[grantee] = key
                if grantee_enters:
                    self.entries.append(grantee)
                return grantee
        return None

    def cancel_waiter(self, name: str) -> None:
        for key, queue in self.queues.items():
            if name in queue:
                queue.remove(name)
                if not queue:
                    del self.queues[key]
                    self.cycle.remove(key)
                return


KINDS = ("arrive", "arrive", "release", "cancel_holder", "cancel_waiter", "release_to_cancelled")
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, 3),
        st.integers(0, 30),
    ),
    max_size=40,
)


@settings(max_examples=150)
@given(
    max_concurrent=st.integers(1, 3),
    max_per_key=st.none() | st.integers(1, 2),
    max_waiting=st.none() | st.integers(0, 6),
    operations=OPERATIONS,
)
async def test_matches_the_model_under_arrivals_releases_and_cancellations(
    max_concurrent: int,
    max_per_key: int | None,
    max_waiting: int | None,
    operations: list[tuple[str, int, int]],
) -> None:
    limiter = FairLimiter(max_concurrent, max_per_key=max_per_key, max_waiting=max_waiting)
    model = Model(max_concurrent, max_per_key, max_waiting)
    async with anyio.create_task_group() as task_group:
        requests = Requests(limiter, task_group)
        for number, (operation, key, pick) in enumerate(operations):
            holders = sorted(model.holders)
            waiters = sorted(name for queue in model.queues.values() for name in queue)
            if operation == "arrive":
                model.arrive(f"r{number}", key)
                await requests.start(f"r{number}", key)
            elif operation in ("release", "cancel_holder") and holders:
                name = holders[pick % len(holders)]
                model.leave(name)
                if operation == "release":
                    await requests.release(name)
                else:
                    await requests.cancel(name)
            elif operation == "cancel_waiter" and waiters:
                name = waiters[pick % len(waiters)]
                model.cancel_waiter(name)
                await requests.cancel(name)
            elif operation == "release_to_cancelled" and holders:
                name = holders[pick % len(holders)]
                grantee = model.leave(name, grantee_enters=False)
                if grantee is not None:
                    # Cancelled before it resumes: it passes the slot on, never enters.
                    model.leave(grantee)
                    requests.by_name[name].then_cancel = requests.by_name[grantee]
                await requests.release(name)
            assert requests.entries == model.entries
            assert requests.holding() == set(model.holders)
            assert limiter.stats == FairLimiterStats(
                in_use=len(model.holders),
                waiting=model.waiting,
                admitted=len(model.entries),
                rejected=model.rejected,
            )
            assert len(model.holders) <= max_concurrent
        task_group.cancel_scope.cancel()
    assert limiter.stats.in_use == 0
    assert limiter.stats.waiting == 0
