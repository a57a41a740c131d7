"""Streaming a reply into chat messages by editing them, paced per channel.

Chat platforms limit how often a bot may edit messages (Discord about five edits per five
seconds per channel, Telegram about one message per second per chat) and answer HTTP 429 with
a `retry_after` beyond that. An LLM streams tokens far faster. `ReplyStreamer` shows the reply
as it grows but makes at most one platform call per `EditPacer` interval per target, folding
the chunks that arrive in between into the next edit, and `finish()` always delivers the final
text, continuing in new messages when it outgrows one (split by `split_message`).

Both talk to the platform only through two async callables (send a message, edit a message),
so they work with any framework and are tested without a network. There is no background
task: `feed` and `finish` make the calls themselves, in the caller's task.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, final

import anyio
import anyio.lowlevel

from ._exceptions import (
    BotperfRuntimeError,
    BotperfTypeError,
    BotperfValueError,
    InvalidOptionError,
)
from ._options import check_int_option, check_seconds_option
from ._split import MIN_LENGTH, _split

__all__ = ["EditPacer", "ReplyStreamer"]

logger = logging.getLogger(__name__)

H = TypeVar("H")


def _retry_after_attribute(exc: BaseException) -> float | None:
    """The exception's numeric `retry_after` attribute: discord.py's and aiogram's 429s."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@final
class EditPacer:
    """Paces message edits per target (a channel, a chat): one per `interval`, slower after 429s.

    One pacer serves a whole bot: every `ReplyStreamer` of one target shares its pace, and
    targets do not wait for each other. A rate limit doubles the target's interval (up to
    `max_interval`) and holds its next call back by at least the larger of the platform's
    `retry_after` and the new interval; each successful call halves it back toward `interval`.
    The pacer remembers the `max_targets` targets paced most recently and forgets the others
    (a forgotten target may be edited at once). Every operation is O(1). Not thread-safe: use it
    from one event loop. See the "Streaming replies" page for the timeline.

    Args:
        interval: Seconds between two calls for one target normally; 0 or more (0 leaves only
            the platform's `retry_after` to pace).
        max_interval: The most the interval grows to after repeated rate limits, seconds; at
            least `interval` and above 0.
        max_targets: Targets remembered; at least 1.
        clock: Monotonic time in seconds (`time.monotonic`; tests pass a fake).
        sleep: Waits that many seconds (`anyio.sleep`; tests pass one that moves a fake clock).

    Raises:
        InvalidOptionError: If an option is out of range or of the wrong type.
    """

    __slots__ = ("_clock", "_interval", "_max_interval", "_max_targets", "_sleep", "_targets")

    def __init__(
        self,
        *,
        interval: float = 1.0,
        max_interval: float = 30.0,
        max_targets: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    ) -> None:
        self._interval = check_seconds_option("EditPacer", "interval", interval, allow_zero=True)
        self._max_interval = check_seconds_option("EditPacer", "max_interval", max_interval)
        if self._max_interval < self._interval:
            raise InvalidOptionError(
                "EditPacer", "max_interval", max_interval, f"at least interval ({interval!r})"
            )
        self._max_targets = check_int_option("EditPacer", "max_targets", max_targets, minimum=1)
        if not callable(clock):
            raise InvalidOptionError(
                "EditPacer", "clock", clock, "a function returning seconds, like time.monotonic"
            )
        if not callable(sleep):
            raise InvalidOptionError(
                "EditPacer", "sleep", sleep, "an async function of seconds, like anyio.sleep"
            )
        self._clock = clock
        self._sleep = sleep
        # target -> [time of its next allowed call, its current interval]
        self._targets: OrderedDict[Hashable, list[float]] = OrderedDict()

    @property
    def interval(self) -> float:
        """Seconds between two calls for one target, when it is not backed off."""
        return self._interval

    @property
    def max_interval(self) -> float:
        """The most a target's interval grows to after rate limits, seconds."""
        return self._max_interval

    @property
    def max_targets(self) -> int:
        """How many targets the pacer remembers."""
        return self._max_targets

    def __len__(self) -> int:
        return len(self._targets)

    def delay(self, target: Hashable) -> float:
        """Seconds until `target` may be edited; 0.0 if it may be now.

        Reading the delay does not count as using the target for the LRU order.
        """
        state = self._targets.get(target)
        if state is None:
            return 0.0
        wait = state[0] - self._clock()
        return wait if wait > 0.0 else 0.0

    def interval_for(self, target: Hashable) -> float:
        """The target's current interval in seconds: `interval`, or more after rate limits."""
        state = self._targets.get(target)
        return self._interval if state is None else state[1]

    def mark(self, target: Hashable) -> None:
        """Note that a call for `target` starts now: the next waits the target's interval.

        Call it before awaiting the platform, so that other replies of the target see the
        slot taken at once. A call made before the target was due (a reply's first message)
        never shortens a wait already imposed.
        """
        now = self._clock()
        state = self._targets.get(target)
        if state is None:
            self._remember(target, [now + self._interval, self._interval])
        else:
            state[0] = max(state[0], now + state[1])
            self._targets.move_to_end(target)

    def record_success(self, target: Hashable) -> None:
        """Note that a call for `target` succeeded: halve a backed-off interval."""
        state = self._targets.get(target)
        if state is not None and state[1] > self._interval:
            state[1] = max(state[1] / 2, self._interval)

    def record_rate_limit(self, target: Hashable, retry_after: float | None = None) -> None:
        """Note a rate limit: double the interval, wait at least it and `retry_after` seconds."""
        now = self._clock()
        state = self._targets.get(target)
        current = self._interval if state is None else state[1]
        interval = min(max(current * 2, self._interval), self._max_interval)
        wait = max(interval, retry_after or 0.0)
        if state is None:
            self._remember(target, [now + wait, interval])
        else:
            state[0], state[1] = now + wait, interval
            self._targets.move_to_end(target)

    async def wait(self, target: Hashable) -> None:
        """Sleep until `target` may be edited (at once if it may be now)."""
        delay = self.delay(target)
        while delay > 0.0:
            await self._sleep(delay)
            delay = self.delay(target)

    def _remember(self, target: Hashable, state: list[float]) -> None:
        self._targets[target] = state
        if len(self._targets) > self._max_targets:
            self._targets.popitem(last=False)


@final
class ReplyStreamer(Generic[H]):
    """Streams one reply into chat messages: sent at once, then edited as paced, then final.

    The first chunk with visible text is sent at once, so the user sees the reply start.
    After that, `feed` edits the message only when the pacer says the target is due, and
    the edit shows all the text fed so far. `finish` waits for the pacer and delivers the final
    text exactly, retrying rate limits; a reply longer than `max_length` continues in new
    messages, split by `split_message` (the messages before the last are then final).

    `send(text)` posts a new message and returns a handle for it (a message object, an id);
    `edit(handle, text)` replaces the text of a message `send` posted. An exception they raise
    is a rate limit if `retry_after(exc)` returns a number of seconds: it is then waited out
    (by `feed` skipping edits until the pacer allows, by `finish` sleeping). Any other
    exception propagates from `feed` or `finish`, and the next call tries again. Not
    thread-safe: use it from one event loop.

    Args:
        send: Posts a new message with this text; returns its handle.
        edit: Replaces the text of the message with this handle.
        target: Where the reply goes (a channel or chat id): the key of its pace; hashable.
        pacer: The bot's shared `EditPacer`.
        max_length: Characters per message (Discord 2,000, Telegram 4,096); at least 20.
        retry_after: Given an exception `send` or `edit` raised, the seconds to wait if it is
            a rate limit, else `None`. The default reads a numeric `retry_after` attribute.
        empty_text: Sent by `finish` if the reply had no visible text; `None` (the default)
            sends nothing for an empty reply.

    Raises:
        InvalidOptionError: If an option is out of range or of the wrong type.
    """

    __slots__ = (
        "_attempted",
        "_busy",
        "_chunks",
        "_dirty",
        "_edit",
        "_empty_text",
        "_finished",
        "_finishing",
        "_handles",
        "_max_length",
        "_pacer",
        "_retry_after",
        "_send",
        "_shown",
        "_start",
        "_target",
    )

    def __init__(
        self,
        send: Callable[[str], Awaitable[H]],
        edit: Callable[[H, str], Awaitable[object]],
        *,
        target: Hashable,
        pacer: EditPacer,
        max_length: int = 2000,
        retry_after: Callable[[Exception], float | None] = _retry_after_attribute,
        empty_text: str | None = None,
    ) -> None:
        for name, value in (("send", send), ("edit", edit), ("retry_after", retry_after)):
            if not callable(value):
                raise InvalidOptionError("ReplyStreamer", name, value, "a function")
        try:
            hash(target)
        except TypeError:
            raise InvalidOptionError(
                "ReplyStreamer", "target", target, "hashable, such as a channel id"
            ) from None
        if not isinstance(pacer, EditPacer):
            raise InvalidOptionError("ReplyStreamer", "pacer", pacer, "an EditPacer")
        self._max_length = check_int_option(
            "ReplyStreamer", "max_length", max_length, minimum=MIN_LENGTH
        )
        given: object = empty_text  # checked at run time whatever the annotation says
        if given is not None and (
            not isinstance(given, str) or not given.strip() or len(given) > self._max_length
        ):
            raise InvalidOptionError(
                "ReplyStreamer",
                "empty_text",
                empty_text,
                f"None or a str with visible text of at most max_length ({max_length}) chars",
            )
        self._send = send
        self._edit = edit
        self._target = target
        self._pacer = pacer
        self._retry_after = retry_after
        self._empty_text = empty_text
        self._chunks: list[str] = []
        self._handles: list[H] = []
        self._shown = ""  # what the last message shows
        self._start = 0  # where the last message's text starts in the reply
        self._dirty = False  # fed since the messages last showed the whole text
        self._attempted = False  # the first message was tried (later calls are paced)
        self._busy: anyio.Event | None = None  # set while a platform call is awaited
        self._finishing = False
        self._finished = False

    @property
    def text(self) -> str:
        """Everything fed so far."""
        chunks = self._chunks
        if len(chunks) > 1:
            chunks[:] = ["".join(chunks)]
        return chunks[0] if chunks else ""

    @property
    def handles(self) -> list[H]:
        """The handles `send` returned so far, in order (a copy)."""
        return list(self._handles)

    async def feed(self, chunk: str) -> None:
        """Add a chunk of the reply; make a platform call only if the target is due now.

        Returns at once unless a call is due, and then makes one call: the first message, an
        edit showing all the text so far, or (when the text outgrew the message) the next
        message. A rate limit is noted in the pacer, not raised.

        Raises:
            TypeError: If `chunk` is not a str.
            RuntimeError: If the reply was finished.
        """
        if self._finished:
            raise BotperfRuntimeError(
                "ReplyStreamer.feed() after finish(): the reply is final; "
                "start a new ReplyStreamer for the next reply"
            )
        if not isinstance(chunk, str):
            raise BotperfTypeError(
                f"feed() takes the text of a chunk, a str, got {type(chunk).__name__}"
            )
        if chunk:
            self._chunks.append(chunk)
            self._dirty = True
        if not self._dirty or self._busy is not None:
            return
        if self._attempted and self._pacer.delay(self._target) > 0.0:
            return
        await self._call_next()

    async def finish(self) -> list[H]:
        """Deliver the whole reply, waiting for the pacer and retrying rate limits.

        Returns when every message shows its final text. An empty reply (no visible text)
        sends nothing unless `empty_text` was given. Calling it again returns the same
        handles. To bound the wait, wrap it in `anyio.fail_after`.

        Returns:
            The handles `send` returned, in order.
        """
        if self._finished:
            return list(self._handles)
        self._finishing = True
        try:
            while True:
                busy = self._busy
                if busy is not None:
                    await busy.wait()  # a call made by feed() in another task
                    continue
                if self._next_call() is None:
                    break
                if self._attempted and self._pacer.delay(self._target) > 0.0:
                    await self._pacer.wait(self._target)
                    continue
                if not await self._call_next():
                    await anyio.lowlevel.checkpoint()  # rate limited: let time pass
        finally:
            self._finishing = False
        self._finished = True
        return list(self._handles)

    def _next_call(self) -> tuple[bool, str, int] | None:
        """The platform call that brings the messages closer to the text, if any is needed.

        `(True, text, start)` sends a new message whose text starts at `start` in the reply;
        `(False, text, 0)` edits the last message.
        """
        text = self.text
        parts = _split(text, self._max_length, self._start, max_parts=2)
        if not parts:
            if self._finishing and self._empty_text is not None and not self._handles:
                return True, self._empty_text, len(text)
            return None
        first = parts[0]
        rendered = first.opener + text[first.start : first.end] + first.closer
        if not self._handles:
            return True, rendered, first.start
        if rendered != self._shown:
            return False, rendered, 0
        if len(parts) > 1 and self._settled(text, first.start):
            second = parts[1]
            rendered = second.opener + text[second.start : second.end] + second.closer
            return True, rendered, second.start
        return None

    def _settled(self, text: str, start: int) -> bool:
        """Whether text still to come can no longer move the cut of the message at `start`.

        The messages before the last are final, so the last one is only left for the next
        when its cut is known. Only an unfinished last line that may yet become a fence line
        (its first characters are backticks, or it is empty) can still change it, and only
        while nothing but whitespace lies between it and the message's window.
        """
        if self._finishing:
            return True
        last_line = text.rfind("\n") + 1
        if text[start + self._max_length : last_line].strip():
            return True
        line = text[last_line:]
        head = line.lstrip(" ")
        return len(line) - len(head) > 3 or head[:3] != "`" * len(head[:3])

    async def _call_next(self) -> bool:
        """Make the next platform call; False if it was rate limited."""
        call = self._next_call()
        if call is None:
            self._dirty = False
            return True
        is_send, text, start = call
        self._attempted = True
        self._pacer.mark(self._target)
        busy = self._busy = anyio.Event()
        try:
            if is_send:
                handle = await self._send(text)
                self._handles.append(handle)
                self._start = start
            else:
                await self._edit(self._handles[-1], text)
            self._shown = text
        except Exception as exc:
            wait = self._retry_after(exc)
            if wait is None:
                raise
            if not wait >= 0.0 or math.isinf(wait):
                raise BotperfValueError(
                    f"retry_after({exc!r}) returned {wait!r}: it must return a finite number "
                    "of seconds >= 0 for a rate limit, or None for any other exception"
                ) from exc
            self._pacer.record_rate_limit(self._target, wait)
            logger.info("target %r rate limited; retrying in %.2f s or more", self._target, wait)
            return False
        finally:
            self._busy = None
            busy.set()
        self._pacer.record_success(self._target)
        return True
