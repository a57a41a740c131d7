"""Streaming the core's reply into a chat platform with botperf's `ReplyStreamer`.

Both bots deliver a reply the same way: the platform's typing indicator until the first words
arrive, then one message that grows by paced edits (a shared `EditPacer`), continuing in new
messages beyond the platform's limit, and a short note when the model said nothing. Only the
``send``/``edit`` callables, the message limit and how a rate limit is recognised differ, so
they are arguments. No chat framework is imported here.

A platform that keeps answering 429 must not hold a reply forever: `stream_reply` waits out a
rate limit only while it asks for at most ``max_wait`` seconds and only ``max_rate_limits``
times per reply; beyond that the platform's exception propagates, for the bot to log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager, aclosing, nullcontext
from typing import Any, TypeVar

from botperf import EditPacer, ReplyStreamer

__all__ = ["RetryAfter", "bounded_retry_after", "stream_reply"]

logger = logging.getLogger(__name__)

H = TypeVar("H")

RetryAfter = Callable[[Exception], float | None]
"""Given an exception ``send`` or ``edit`` raised: the seconds to wait if it is a rate limit."""


def bounded_retry_after(
    retry_after: RetryAfter, *, max_wait: float, max_rate_limits: int
) -> RetryAfter:
    """``retry_after``, giving up (``None``) on a wait over ``max_wait`` or too many limits.

    The counter is per returned function: make one per reply.
    """
    seen = 0

    def bounded(exc: Exception) -> float | None:
        nonlocal seen
        wait = retry_after(exc)
        if wait is None:
            return None
        seen += 1
        if wait > max_wait or seen > max_rate_limits:
            logger.warning(
                "rate limited %d times, the last asking for %.1f s: giving up on this reply",
                seen,
                wait,
            )
            return None
        return wait

    return bounded


async def stream_reply(
    chunks: AsyncGenerator[str, None],
    send: Callable[[str], Awaitable[H]],
    edit: Callable[[H, str], Awaitable[object]],
    *,
    target: Hashable,
    pacer: EditPacer,
    max_length: int,
    retry_after: RetryAfter,
    typing: AbstractAsyncContextManager[Any] | None = None,
    max_wait: float = 60.0,
    max_rate_limits: int = 10,
) -> list[H]:
    """Stream ``chunks`` (a `ChatCore.stream`) into messages; the handles ``send`` returned.

    ``typing`` (the platform's typing indicator, if any) is held until the first chunk
    arrives. ``chunks`` is closed whatever happens. A stream of no text sends nothing: the
    core streams its own placeholder for an empty reply, and nothing at all to a user
    it has already told to slow down.

    Raises:
        Exception: Whatever ``send`` or ``edit`` raised that is not a rate limit, or a rate
            limit beyond ``max_wait`` or ``max_rate_limits`` (see `bounded_retry_after`).
    """
    reply: ReplyStreamer[H] = ReplyStreamer(
        send,
        edit,
        target=target,
        pacer=pacer,
        max_length=max_length,
        retry_after=bounded_retry_after(
            retry_after, max_wait=max_wait, max_rate_limits=max_rate_limits
        ),
    )
    async with aclosing(chunks):
        async with typing or nullcontext():
            first = await anext(chunks, None)
        if first is not None:
            await reply.feed(first)
            async for chunk in chunks:
                await reply.feed(chunk)
    return await reply.finish()
