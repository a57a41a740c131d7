"""Random interleavings of callers, keys, failures and cancellations, checked against invariants.

Each example is a script of steps run on one event loop: start a caller for a key,
cancel a caller, let the oldest running execution of a key succeed or fail, forget a
key. Executions block until the script finishes them, so the script, not timing,
decides the interleaving. After every step the tasks are given enough scheduler
turns to settle; after the script, every execution still running is finished and
the invariants are checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from botperf import Deduplicator

pytestmark = pytest.mark.anyio

KEYS = ("a", "b", "c")
# (action, n): for "cancel" n counts back from the newest caller, else it picks a key.
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["call", "call", "cancel", "cancel", "succeed", "fail", "forget"]),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=25,
)


class Failure(Exception):
    pass


@dataclass
class Execution:
    key: str
    generation: int
    release: anyio.Event = field(default_factory=anyio.Event)
    fail: bool = False
    outcome: object = None
    saw_cancellation: bool = False


@dataclass
class Caller:
    key: str
    generation: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: bool = False
    got: object = None


async def settle() -> None:
    # More scheduler turns than the longest chain of wake-ups a step can cause.
    for _ in range(12):
        await anyio.lowlevel.checkpoint()


# The scenarios of the issue, always run, before the random ones.
@example(steps=[("call", 1), ("cancel", 0)], ttl=None, cancel_abandoned=True)
@example(
    steps=[("call", 0), ("call", 0), ("cancel", 1), ("succeed", 0)], ttl=None, cancel_abandoned=True
)
@example(
    steps=[("call", 0), ("cancel", 0), ("call", 0), ("succeed", 0)],
    ttl=3600.0,
    cancel_abandoned=False,
)
@example(
    steps=[("call", 0), ("fail", 0), ("call", 0), ("succeed", 0)], ttl=3600.0, cancel_abandoned=True
)
@example(
    steps=[("call", 0), ("forget", 0), ("call", 0), ("succeed", 0)],
    ttl=3600.0,
    cancel_abandoned=True,
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=STEPS,
    ttl=st.sampled_from([None, 3600.0]),
    cancel_abandoned=st.booleans(),
)
async def test_random_interleavings_keep_every_invariant(
    steps: list[tuple[str, int]], ttl: float | None, cancel_abandoned: bool
) -> None:
    dedup = Deduplicator(ttl=ttl, cancel_abandoned=cancel_abandoned)
    executions: list[Execution] = []
    running: dict[str, list[Execution]] = {"a": [], "b": [], "c": []}
    callers: list[Caller] = []
    # Bumped by forget(): callers and executions of an older generation cannot be joined.
    generation = {"a": 0, "b": 0, "c": 0}

    def joinable(key: str) -> bool:
        """Whether a new call with ``key`` must join a running execution."""
        waited_for = any(
            c.key == key
            and c.generation == generation[key]
            and not c.done
            and not c.scope.cancel_called
            for c in callers
        )
        kept_running = not cancel_abandoned and any(
            e.generation == generation[key] for e in running[key]
        )
        return waited_for or kept_running

    async def fn(key: str) -> object:
        execution = Execution(key, generation[key])
        number = len(executions)
        executions.append(execution)
        running[key].append(execution)
        try:
            await execution.release.wait()
        except anyio.get_cancelled_exc_class():
            execution.saw_cancellation = True
            raise
        finally:
            running[key].remove(execution)
        # A failure's args name its execution: each caller gets an exception object of
        # its own, equal in type and args.
        execution.outcome = Failure(key, number) if execution.fail else [key]
        if execution.fail:
            raise execution.outcome  # type: ignore[misc]
        return execution.outcome

    async def call(caller: Caller) -> None:
        with caller.scope:
            try:
                caller.got = await dedup.run(caller.key, fn, caller.key)
            except Failure as exc:
                caller.got = exc
        caller.done = True

    def finish(key: str, *, fail: bool) -> None:
        if running[key]:
            execution = running[key][0]
            execution.fail = fail
            execution.release.set()

    async with anyio.create_task_group() as tg:
        for action, n in steps:
            argument = KEYS[n % len(KEYS)]
            if action == "call":
                must_join = joinable(argument)
                before = dedup.stats
                caller = Caller(argument, generation[argument])
                callers.append(caller)
                tg.start_soon(call, caller)
                await settle()
                after = dedup.stats
                if must_join:  # single flight: no second execution while one is shared
                    assert (after.executions, after.shared) == (
                        before.executions,
                        before.shared + 1,
                    )
            elif action == "cancel":
                if n < len(callers):
                    callers[-1 - n].scope.cancel()
            elif action == "forget":
                dedup.forget(argument)
                generation[argument] += 1
            else:
                finish(argument, fail=action == "fail")
            await settle()
            assert dedup.in_flight <= 3
            if cancel_abandoned:  # an execution nobody waits for has been cancelled
                for key, executions_running in running.items():
                    for execution in executions_running:
                        assert any(
                            c.key == key and c.generation == execution.generation and not c.done
                            for c in callers
                        )
        # Finish whatever still runs, including executions started by late joiners.
        with anyio.fail_after(10):
            while any(running.values()):
                for key in running:
                    finish(key, fail=False)
                await settle()

    with anyio.fail_after(10):
        while dedup._flights or dedup._detached:
            await anyio.lowlevel.checkpoint()

    stats = dedup.stats
    assert stats.calls == len(callers)
    assert stats.calls == stats.executions + stats.shared + stats.cache_hits
    assert dedup.in_flight == 0
    assert len(executions) <= stats.executions
    assert stats.errors == sum(1 for e in executions if e.fail and not e.saw_cancellation)
    outcomes = {id(e.outcome): e for e in executions if e.outcome is not None}
    for caller in callers:
        if caller.scope.cancelled_caught:
            assert not caller.done or caller.got is None
            continue
        assert caller.done
        # The outcome of exactly one execution: its result, or an exception like its own.
        if isinstance(caller.got, Failure):
            key, number = caller.got.args
            execution = executions[number]
            assert type(execution.outcome) is Failure
            assert execution.outcome.args == caller.got.args
        else:
            execution = outcomes[id(caller.got)]
        assert execution.key == caller.key
    for execution in executions:
        if execution.saw_cancellation:
            assert cancel_abandoned
