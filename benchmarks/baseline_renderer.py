"""The baseline of ``replies.py``: the Discord example's renderer before botperf's ReplyStreamer.

Kept as it was in ``examples/discord_bot/edits.py`` (with ``baseline_split.py``, formerly
``examples/discord_bot/split.py``), so the benchmark compares against the code it replaced.

Discord allows about five message edits per five seconds per channel and answers HTTP 429
beyond that. A token stream arrives far faster, so `StreamRenderer` shows the text as it
grows but edits at most once per `EditThrottle` interval per channel (about one a second),
backs off when Discord still says 429, and always delivers the final text. Replies longer than
one message continue in new messages, split by `split_message`.

The renderer talks to Discord only through two callables (send a message, edit a message), so
it is tested without a network, and `EditThrottle` takes its clock as an argument.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, final

import anyio

from .baseline_split import DISCORD_LIMIT, split_message

__all__ = ["EditThrottle", "RateLimited", "StreamRenderer"]

logger = logging.getLogger(__name__)

M = TypeVar("M")


class RateLimited(Exception):
    """Raised by a renderer's ``send``/``edit`` callable when Discord answered HTTP 429.

    Attributes:
        retry_after: seconds Discord asked to wait, when it said.
    """

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__(f"rate limited by Discord (retry after {retry_after} s)")
        self.retry_after = retry_after


@final
class EditThrottle:
    """Per-channel pacing of message edits: one per ``interval`` seconds, slower after a 429.

    Args:
        interval: seconds between two edits in one channel, normally; > 0.
        max_interval: the most the interval grows to after repeated 429s; >= ``interval``.
        max_channels: channels remembered (least recently used forgotten beyond); >= 1.
        clock: monotonic time in seconds (``time.monotonic``; tests pass a fake).

    Each 429 doubles the channel's interval (up to ``max_interval``) and pushes its next edit
    past Discord's ``retry_after``; each successful edit halves it back toward ``interval``.
    Every operation is O(1).
    """

    def __init__(
        self,
        *,
        interval: float = 1.0,
        max_interval: float = 30.0,
        max_channels: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if not max_interval >= interval:
            raise ValueError(f"max_interval must be >= interval ({interval}), got {max_interval!r}")
        if max_channels < 1:
            raise ValueError(f"max_channels must be >= 1, got {max_channels}")
        self.interval = interval
        self.max_interval = max_interval
        self.max_channels = max_channels
        self._clock = clock
        # channel -> (time of the next allowed edit, current interval)
        self._channels: OrderedDict[int, tuple[float, float]] = OrderedDict()

    def delay(self, channel_id: int) -> float:
        """Seconds to wait before the next edit in this channel (0.0 if it may edit now)."""
        state = self._channels.get(channel_id)
        if state is None:
            return 0.0
        return max(state[0] - self._clock(), 0.0)

    def ready(self, channel_id: int) -> bool:
        """Whether the channel may edit now."""
        return self.delay(channel_id) == 0.0

    def interval_for(self, channel_id: int) -> float:
        """The channel's current interval in seconds (grown by 429s)."""
        state = self._channels.get(channel_id)
        return self.interval if state is None else state[1]

    def record_edit(self, channel_id: int) -> None:
        """Note an edit (or send) made now; relax a backed-off interval by half."""
        interval = max(self.interval_for(channel_id) / 2, self.interval)
        self._set(channel_id, self._clock() + interval, interval)

    def record_rate_limit(self, channel_id: int, retry_after: float | None = None) -> None:
        """Note a 429: double the channel's interval and wait at least ``retry_after`` s."""
        interval = min(self.interval_for(channel_id) * 2, self.max_interval)
        wait = max(interval, retry_after or 0.0)
        self._set(channel_id, self._clock() + wait, interval)

    def __len__(self) -> int:
        return len(self._channels)

    def _set(self, channel_id: int, next_edit: float, interval: float) -> None:
        self._channels[channel_id] = (next_edit, interval)
        self._channels.move_to_end(channel_id)
        if len(self._channels) > self.max_channels:
            self._channels.popitem(last=False)


@final
class StreamRenderer(Generic[M]):
    """Render a growing reply into one or more Discord messages, edits paced by a throttle.

    Args:
        channel_id: the channel whose edit budget is used.
        send: posts a new message with this content and returns it.
        edit: replaces the content of a message posted by ``send``.
        throttle: the shared `EditThrottle`.
        limit: characters per message (Discord: 2,000).
        max_final_attempts: how many times `finish` retries after 429s.
        max_wait: the longest `finish` waits for the throttle before giving up, seconds.
        sleep: waits that many seconds (``anyio.sleep``; tests pass one that moves a fake clock).

    ``send`` and ``edit`` raise `RateLimited` on HTTP 429. Intermediate updates that
    hit the throttle or a 429 are simply skipped (the next one carries the newer text);
    `finish` waits for the throttle and retries, so the final text is always delivered.
    """

    def __init__(
        self,
        channel_id: int,
        *,
        send: Callable[[str], Awaitable[M]],
        edit: Callable[[M, str], Awaitable[None]],
        throttle: EditThrottle,
        limit: int = DISCORD_LIMIT,
        max_final_attempts: int = 5,
        max_wait: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.channel_id = channel_id
        self._send = send
        self._edit = edit
        self._throttle = throttle
        self._limit = limit
        self._max_final_attempts = max_final_attempts
        self._max_wait = max_wait
        self._sleep = sleep
        self._text: list[str] = []
        self._messages: list[M] = []
        self._shown: list[str] = []

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return "".join(self._text)

    @property
    def shown(self) -> tuple[str, ...]:
        """What each posted message currently shows, as far as this renderer knows."""
        return tuple(self._shown)

    async def feed(self, chunk: str) -> None:
        """Add a chunk of the reply; update Discord if the channel's throttle allows it now."""
        self._text.append(chunk)
        if self._throttle.ready(self.channel_id):
            limited = await self._attempt(wait=False)
            if limited is not None:
                self._throttle.record_rate_limit(self.channel_id, limited.retry_after)

    async def finish(self) -> None:
        """Deliver the complete text, waiting for the throttle and retrying after 429s.

        Raises:
            RateLimited: if Discord still refused after ``max_final_attempts`` attempts, or
                asked to wait longer than ``max_wait``.
        """
        for attempt in range(1, self._max_final_attempts + 1):
            limited = await self._attempt(wait=True)
            if limited is None:
                return
            self._throttle.record_rate_limit(self.channel_id, limited.retry_after)
            if attempt == self._max_final_attempts:
                raise limited
            logger.info("channel %s rate limited; retrying the final edit", self.channel_id)

    async def _attempt(self, *, wait: bool) -> RateLimited | None:
        """`_sync`, returning the 429 instead of raising it."""
        try:
            await self._sync(wait=wait)
        except RateLimited as limited:
            return limited
        return None

    async def _sync(self, *, wait: bool) -> None:
        """Make the posted messages show the current text (one operation unless ``wait``)."""
        for index, part in enumerate(split_message(self.text, limit=self._limit)):
            if index < len(self._shown) and self._shown[index] == part:
                continue
            delay = self._throttle.delay(self.channel_id)
            if delay:
                if not wait:
                    return
                if delay > self._max_wait:
                    raise RateLimited(delay)
                await self._sleep(delay)
            if index < len(self._messages):
                await self._edit(self._messages[index], part)
                self._shown[index] = part
            else:
                self._messages.append(await self._send(part))
                self._shown.append(part)
            self._throttle.record_edit(self.channel_id)
