"""Random join times, consumer speeds, early exits and upstream failures, checked per consumer.

Each example is a script run on one event loop. Time advances in steps that the
script takes: at each step some consumers join, then every live upstream is allowed
one more chunk; after the last step the upstreams end or fail. Consumers read at
their own speed (a number of scheduler turns between chunks) and may leave early by
``break``, ``aclose()`` or cancellation. So the script, not timing, decides who joins
when; the scheduler decides the rest, and the properties must hold whatever it does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from botperf import Deduplicator, StreamTooLongError

pytestmark = pytest.mark.anyio


class Failure(Exception):
    pass


@dataclass
class Upstream:
    chunks: list[tuple[int, int]] = field(default_factory=list)
    closed: bool = False


@dataclass
class Consumer:
    join_step: int
    turns_per_chunk: int
    leave_after: int | None  # chunks read before leaving early; None reads to the end
    how: str  # "break", "aclose" or "cancel"
    got: list[tuple[int, int]] = field(default_factory=list)
    outcome: BaseException | None = None
    ended: bool = False  # reached the end or the upstream's exception
    active: bool = False  # between its first step and leaving


# (join_step, turns_per_chunk, leave_after, how) of each consumer.
PLANS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),
        st.integers(min_value=0, max_value=3),
        st.none() | st.integers(min_value=0, max_value=5),
        st.sampled_from(["break", "aclose", "cancel"]),
    ),
    min_size=1,
    max_size=6,
)


async def settle() -> None:
    for _ in range(15):
        await anyio.lowlevel.checkpoint()


@example(  # a late joiner replays, a slow one lags, one fails with the upstream
    plans=[(0, 3, None, "break"), (2, 0, None, "break")],
    steps=4,
    fail=True,
    max_chunks=10,
    cancel_abandoned=True,
)
@example(  # the only consumer leaves, a later one starts a fresh upstream
    plans=[(0, 0, 1, "cancel"), (3, 0, None, "aclose")],
    steps=5,
    fail=False,
    max_chunks=10,
    cancel_abandoned=True,
)
@example(  # past max_chunks
    plans=[(0, 1, None, "break"), (1, 0, None, "break")],
    steps=5,
    fail=False,
    max_chunks=2,
    cancel_abandoned=False,
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=PLANS,
    steps=st.integers(min_value=0, max_value=6),
    fail=st.booleans(),
    max_chunks=st.integers(min_value=1, max_value=8),
    cancel_abandoned=st.booleans(),
)
async def test_every_consumer_sees_exactly_one_upstreams_sequence(
    plans: list[tuple[int, int, int | None, str]],
    steps: int,
    fail: bool,
    max_chunks: int,
    cancel_abandoned: bool,
) -> None:
    consumers = [Consumer(*plan) for plan in plans]
    dedup = Deduplicator(max_chunks=max_chunks, cancel_abandoned=cancel_abandoned)
    upstreams: list[Upstream] = []
    step_reached = [anyio.Event() for _ in range(steps + 1)]

    async def generate(start_step: int) -> AsyncIterator[tuple[int, int]]:
        upstream = Upstream()
        upstreams.append(upstream)
        number = len(upstreams) - 1
        try:
            for step in range(start_step, steps):
                await step_reached[step].wait()
                chunk = (number, step)
                upstream.chunks.append(chunk)
                yield chunk
            await step_reached[steps].wait()
            if fail:
                raise Failure(number)
        finally:
            upstream.closed = True

    async def consume(consumer: Consumer, step: int) -> None:
        stream = dedup.stream("key", generate, step)
        consumer.active = True
        with anyio.CancelScope() as scope:
            try:
                async for chunk in stream:
                    if consumer.leave_after is not None and len(consumer.got) == (
                        consumer.leave_after
                    ):
                        if consumer.how == "aclose":
                            await stream.aclose()
                        elif consumer.how == "cancel":
                            scope.cancel()
                            await anyio.lowlevel.checkpoint()
                        break
                    consumer.got.append(chunk)
                    for _ in range(consumer.turns_per_chunk):
                        await anyio.lowlevel.checkpoint()
                else:
                    consumer.ended = True
            except (Failure, StreamTooLongError) as exc:
                consumer.outcome = exc
                consumer.ended = True
            finally:
                consumer.active = False
        # Returning drops the last reference to `stream`: after a break or a cancellation,
        # that is how it leaves (no aclose() here, as in most code).

    def check_single_flight() -> None:
        running = [upstream for upstream in upstreams if not upstream.closed]
        assert len(running) <= 1  # never a second upstream while one can be joined
        if cancel_abandoned and not any(consumer.active for consumer in consumers):
            assert not running  # nobody consumes any more: the upstream was closed

    async with anyio.create_task_group() as tg:
        for step in range(steps + 1):
            for consumer in consumers:
                if consumer.join_step == step:
                    tg.start_soon(consume, consumer, step)
            await settle()
            check_single_flight()
            step_reached[step].set()
            await settle()
            check_single_flight()
        for consumer in consumers:  # those joining after the end start upstreams of 0 chunks
            if consumer.join_step > steps:
                tg.start_soon(consume, consumer, steps)

    with anyio.fail_after(10):
        while dedup._streams or dedup._detached:
            await anyio.lowlevel.checkpoint()

    assert dedup.in_flight == 0
    assert all(upstream.closed for upstream in upstreams)
    stats = dedup.stats
    assert stats.calls == stats.executions + stats.shared + stats.cache_hits
    assert stats.executions == len(upstreams)
    assert stats.calls == len(consumers)
    for consumer in consumers:
        if consumer.got:
            upstream = upstreams[consumer.got[0][0]]
            delivered = upstream.chunks[:max_chunks]
        else:
            delivered = []
        if consumer.ended:
            # The whole sequence of one upstream, in order, once each, then its outcome.
            if consumer.got:
                assert consumer.got == delivered
            too_long = consumer.got and len(upstream.chunks) > max_chunks
            if too_long:
                assert isinstance(consumer.outcome, StreamTooLongError)
            elif fail:
                assert isinstance(consumer.outcome, Failure)
                if consumer.got:
                    assert consumer.outcome.args == (consumer.got[0][0],)
            else:
                assert consumer.outcome is None
        else:
            # Left early: a prefix of one upstream's sequence, as long as it chose.
            assert consumer.leave_after is not None
            assert consumer.got == delivered[: len(consumer.got)]
            assert len(consumer.got) == consumer.leave_after
