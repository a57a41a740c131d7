"""Helpers for tests of concurrent code, free of wall-clock timing (both backends)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel


async def eventually(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate()`` holds (a safety-net timeout, not a timing)."""
    with anyio.fail_after(10):
        while not predicate():
            await anyio.lowlevel.checkpoint()


async def leave_once_started(
    call: Callable[[], Coroutine[Any, Any, object]], started: anyio.Event
) -> None:
    """Make ``call()`` in a task and cancel it as soon as ``started`` is set.

    A caller that leaves (a timeout, a cancelled handler) after the work has begun,
    whatever the machine's speed: a short ``move_on_after`` could expire before the
    work starts on a loaded machine, and then test something else.
    """
    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await started.wait()
        tg.cancel_scope.cancel()


async def all_tasks_blocked() -> None:
    """`anyio.wait_all_tasks_blocked`, without its tenth-of-a-second polls on asyncio.

    On asyncio anyio polls every 0.1 s while a task is still runnable; a task that was
    just started or woken usually blocks within a few steps, so a few checkpoints first
    make that poll rare. It returns when every other task is blocked, as anyio's does.
    """
    for _ in range(8):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()
