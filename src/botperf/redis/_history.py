"""The HistoryStore API on Redis: one conversation per channel, shared by every process."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from itertools import islice
from typing import Any, Generic, cast, final

from redis.asyncio import Redis
from typing_extensions import TypeVar

from .._exceptions import BotperfValueError
from .._history_base import (
    HistoryStats,
    Message,
    StoreOptions,
    TrimMode,
    argument_type_error,
    check_message,
    check_summary,
    new_tuple,
    unhashable_channel,
)
from ._connection import Connection, check_client_options
from ._errors import RedisCommandError
from ._resource import RedisResource

__all__ = ["RedisHistoryStore"]

logger = logging.getLogger(__name__)

_OWNER = "RedisHistoryStore"

ChannelT = TypeVar("ChannelT", bound="int | str", default="int | str")

# Every script below is one call's whole update, so each call is atomic across processes.
# KEYS[1] recency: a sorted set of channel members, scored by KEYS[2], a counter
# (INCR): a server-side clock gives one exact order whatever the clients' clocks say.
# KEYS[3] stats: a hash of counters, "messages" kept equal to the messages held.
# A channel's messages are a list at prefix .. "h:" .. member, oldest first. Scripts
# return a history as one JSON array: redis-py's pure-Python reply parser pays per
# element, so 50 messages as one string are read far faster than as 50, and decoded
# with one json.loads.
#
# A channel's window state and summary are a hash at prefix .. "w:" .. member:
# "dropped" counts the messages max_messages pushed off the list's head, so that
# dropped + index numbers a message for good; "start" is the number of the window's
# first message (all before it have left the window); "overflow" is 1 once messages of
# a "stable" window dropped off before its next prompt; "epoch" tells a channel from one
# cleared and created again under the same key; "summary" is JSON [text, tokens]. The
# prompt itself is computed in Python by StoreOptions.first_kept, the rule both stores
# share; _TRIM then moves "start" only if no other process moved it meanwhile.

_APPEND = """
local recency, clock, stats, history, window = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, message, prefix = ARGV[1], ARGV[2], ARGV[3]
local max_messages, max_channels = tonumber(ARGV[4]), tonumber(ARGV[5])
local mode = tonumber(ARGV[6])
local length = redis.call('RPUSH', history, message)
local trimmed = false
local dropped = 0
if length > max_messages then
    dropped = length - max_messages
    if mode > 0 then
        local gone = redis.call('HINCRBY', window, 'dropped', dropped)
        local start = tonumber(redis.call('HGET', window, 'start') or '0')
        if start < gone then
            -- Messages still in the window drop off: they go to on_trim.
            local first = math.max(start - (gone - dropped), 0)
            trimmed = '[' .. table.concat(
                redis.call('LRANGE', history, first, dropped - 1), ',') .. ']'
            redis.call('HSET', window, 'start', gone)
            if mode == 2 then
                redis.call('HSET', window, 'overflow', 1)
            end
        end
    end
    redis.call('LTRIM', history, -max_messages, -1)
end
redis.call('HINCRBY', stats, 'messages', 1 - dropped)
redis.call('ZADD', recency, redis.call('INCR', clock), member)
local evicted = {trimmed}
while redis.call('ZCARD', recency) > max_channels do
    local oldest = redis.call('ZPOPMIN', recency)[1]
    local key = prefix .. 'h:' .. oldest
    local messages = redis.call('LRANGE', key, 0, -1)
    redis.call('DEL', key, prefix .. 'w:' .. oldest)
    redis.call('HINCRBY', stats, 'messages', -#messages)
    redis.call('HINCRBY', stats, 'evictions', 1)
    evicted[#evicted + 1] = oldest
    evicted[#evicted + 1] = '[' .. table.concat(messages, ',') .. ']'
end
return evicted
"""

_READ = """
local recency, clock, stats, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if not redis.call('ZSCORE', recency, ARGV[1]) then
    redis.call('HINCRBY', stats, 'misses', 1)
    return false
end
redis.call('HINCRBY', stats, 'hits', 1)
redis.call('ZADD', recency, redis.call('INCR', clock), ARGV[1])
return '[' .. table.concat(redis.call('LRANGE', history, 0, -1), ',') .. ']'
"""

# _READ for as_messages: the history and the window's state. ARGV[2] is 0 when the
# call is retried (its hit is counted already), ARGV[3] 1 when the store tracks windows.
_PROMPT = """
local recency, clock, stats, history, window = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, counted = ARGV[1], ARGV[2] == '1'
if not redis.call('ZSCORE', recency, member) then
    if counted then
        redis.call('HINCRBY', stats, 'misses', 1)
    end
    return false
end
if counted then
    redis.call('HINCRBY', stats, 'hits', 1)
end
local now = redis.call('INCR', clock)
redis.call('ZADD', recency, now, member)
if ARGV[3] == '1' and redis.call('HEXISTS', window, 'epoch') == 0 then
    redis.call('HSET', window, 'epoch', now)
end
local state = redis.call('HMGET', window, 'epoch', 'dropped', 'start', 'overflow', 'summary')
return {'[' .. table.concat(redis.call('LRANGE', history, 0, -1), ',') .. ']',
        state[1], state[2], state[3], state[4], state[5]}
"""

# Moves a window's start from ARGV[2] to ARGV[3], unless another process moved it (or
# the channel is not the one read, ARGV[1] its epoch): then 0, and the caller reads again.
_TRIM = """
local state = redis.call('HMGET', KEYS[1], 'epoch', 'start')
if state[1] ~= ARGV[1] or (state[2] or '0') ~= ARGV[2] then
    return 0
end
redis.call('HSET', KEYS[1], 'start', ARGV[3], 'overflow', 0)
return 1
"""

_SUMMARY = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return 0
end
if ARGV[2] == '' then
    redis.call('HDEL', KEYS[2], 'summary')
else
    redis.call('HSET', KEYS[2], 'summary', ARGV[2])
end
return 1
"""

_CLEAR = """
local recency, stats, history, window = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('ZREM', recency, ARGV[1]) == 1 then
    redis.call('HINCRBY', stats, 'messages', -redis.call('LLEN', history))
    redis.call('DEL', history, window)
end
"""

_COUNTERS = (
    "hits",
    "misses",
    "evictions",
    "evict_errors",
    "over_budget",
    "messages",
    "trim_errors",
)

#: The mode _APPEND is given: windows untracked, tracked ("sliding"), "stable".
_UNTRACKED, _TRACKED, _STABLE = 0, 1, 2


@final
class RedisHistoryStore(RedisResource, Generic[ChannelT]):
    """``HistoryStore``'s per-channel chat history, held in Redis and shared by processes.

    Every process (or shard, or replica) that builds a store on the same Redis with the
    same ``prefix`` sees the same conversations, the same recency order and the same
    counters. The semantics are those of ``botperf.HistoryStore``: each channel keeps
    its newest ``max_messages`` messages; beyond ``max_channels`` channels the least
    recently used one is evicted whole and handed to ``on_evict``; ``append()``,
    ``get()`` and ``as_messages()`` mark a channel most recently used, ``contains()``,
    ``size()``, ``channels()`` and ``stats()`` do not.

    The methods are coroutines, one Redis round trip each (a Lua script, so each call's
    updates are atomic across processes): where ``HistoryStore`` has ``len(store)``,
    ``channel in store`` and the ``stats`` property, this class has ``await
    store.size()``, ``await store.contains(channel)`` and ``await store.stats()``.
    There is no ``dump()`` or ``load()``: Redis persists the data itself (RDB
    snapshots, AOF).

    Keys, under ``prefix``: ``recency`` (a sorted set of channels), ``clock`` (the
    counter that orders it), ``stats`` (a hash of counters), ``h:<channel>`` (a list
    of JSON messages per channel) and ``w:<channel>`` (a hash of the channel's window
    state and summary, when it has them). Channels are str or int keys, stored as JSON so
    that ``1`` and ``"1"`` stay distinct channels and come back with their type.
    Each call costs O(log channels) in Redis (the sorted set) plus O(messages) to
    copy a history.

    Redis-py's asyncio client runs on asyncio only: awaiting a method on trio raises
    ``RedisAsyncioRequiredError``.

    Args:
        redis: A ``redis.asyncio.Redis`` client, used as it is and never closed by the
            store (give it ``socket_timeout`` and ``socket_connect_timeout``); or a URL
            such as ``"redis://localhost:6379/0"``, from which the store builds a
            client with both timeouts set to ``timeout``, and closes it in
            ``aclose()`` (or at the end of ``async with store:``).
        prefix: The start of every key the store uses (a non-empty str); stores with
            the same prefix share their data.
        timeout: Seconds each call may take at most, connecting included (above 0);
            beyond it the call raises ``RedisUnavailableError``.
        max_channels: As for ``HistoryStore``.
        max_messages: As for ``HistoryStore``.
        max_tokens: As for ``HistoryStore``.
        count_tokens: As for ``HistoryStore``. Each message's count is stored with it
            by the process that appends it.
        system_prompt: As for ``HistoryStore``.
        trim: As for ``HistoryStore``. Every store on a prefix must be given the same
            ``trim``, limits and ``message_overhead``: the window's state is shared.
        stable_fill: As for ``HistoryStore``.
        message_overhead: As for ``HistoryStore``.
        on_evict: Called as ``on_evict(channel, messages)`` once, cluster-wide, in the
            process whose ``append()`` evicted the channel, after Redis removed it. It
            may be a plain function or return an awaitable, which is awaited. If it
            raises, the error is logged and counted in ``HistoryStats.evict_errors``,
            and the append goes on.
        on_trim: As for ``HistoryStore``, once cluster-wide: in the process whose
            ``as_messages()`` moved the window (or whose ``append()`` pushed a window's
            message off ``max_messages``). It may return an awaitable, which is awaited;
            its errors are logged and counted in ``HistoryStats.trim_errors``.

    Raises:
        InvalidOptionError: If an option is of the wrong type or out of range (as for
            ``HistoryStore``; ``timeout`` above 0, ``prefix`` non-empty).
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        prefix: str = "botperf:history:",
        timeout: float = 5.0,
        max_channels: int = 1000,
        max_messages: int = 50,
        max_tokens: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        system_prompt: str | None = None,
        trim: TrimMode = "sliding",
        stable_fill: float = 0.5,
        message_overhead: int = 0,
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
        on_trim: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
    ) -> None:
        self._options = StoreOptions.check(
            _OWNER,
            max_channels=max_channels,
            max_messages=max_messages,
            max_tokens=max_tokens,
            count_tokens=count_tokens,
            system_prompt=system_prompt,
            on_evict=on_evict,
            trim=trim,
            stable_fill=stable_fill,
            message_overhead=message_overhead,
            on_trim=on_trim,
        )
        self._on_evict = on_evict
        self._on_trim = on_trim
        options = self._options
        self._mode = (
            _STABLE if options.trim == "stable" else _TRACKED if options.tracks else _UNTRACKED
        )
        check_client_options(_OWNER, redis, prefix, timeout, example_prefix="bot:history:")
        self._connection = Connection(redis, timeout)
        client = self._connection.client
        self._prefix = prefix
        self._recency = f"{prefix}recency"
        self._clock = f"{prefix}clock"
        self._stats = f"{prefix}stats"
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)
        self._prompt = client.register_script(_PROMPT)
        self._trim = client.register_script(_TRIM)
        self._summary = client.register_script(_SUMMARY)
        self._clear = client.register_script(_CLEAR)

    async def append(
        self, channel: ChannelT, role: str, content: str, *, author: str | None = None
    ) -> None:
        """Add a message to a channel's history and mark the channel most recently used.

        As ``HistoryStore.append()``, in one atomic Redis script: an unknown channel is
        created, the oldest message beyond ``max_messages`` drops off (to ``on_trim``,
        called here, if it was in the window), and the least recently used channels
        beyond ``max_channels`` are evicted (``on_evict`` is then called here, once per
        evicted channel).

        Args:
            channel: The channel's key, a str or an int.
            role: The speaker's role, a non-empty str such as ``"user"``.
            content: The message text (may be empty).
            author: Optionally, who wrote it, as a str.

        Raises:
            TypeError: If ``role``, ``content`` or ``author`` is not a str (or
                ``author`` not None), or ``channel`` is not a str or an int.
            ValueError: If ``role`` is empty, or ``count_tokens`` returned
                something other than a non-negative int.
            RedisUnavailableError: If Redis cannot be reached or does not answer within
                ``timeout``; the message may or may not have been appended.
            RedisCommandError: If Redis refused the update (see the error).
        """
        message = check_message(role, content, author)
        member = _member(channel)
        options = self._options
        tokens = None if options.max_tokens is None else options.count("content", content)
        encoded = json.dumps([*message, tokens])
        operation = "RedisHistoryStore.append"
        with self._connection.guard(operation):
            trimmed, *evicted = await self._append(
                keys=[
                    self._recency,
                    self._clock,
                    self._stats,
                    self._history_key(member),
                    self._window_key(member),
                ],
                args=[
                    member,
                    encoded,
                    self._prefix,
                    options.max_messages,
                    options.max_channels,
                    self._mode,
                ],
            )
        if trimmed is not None and self._on_trim is not None:
            await self._report_trim(self._on_trim, channel, _messages(trimmed, operation))
        on_evict = self._on_evict
        if on_evict is not None:
            # The script returns [trimmed, channel, history, channel, history, ...].
            for evicted_member, history in zip(evicted[::2], evicted[1::2], strict=True):
                await self._report_eviction(
                    on_evict,
                    cast(ChannelT, _channel(evicted_member, operation)),
                    _messages(history, operation),
                )

    async def get(self, channel: ChannelT) -> tuple[Message, ...]:
        """Return a channel's messages, oldest first, and mark it most recently used.

        An unknown channel gives ``()``, is not created, and counts as a miss.

        Args:
            channel: The channel's key, a str or an int.

        Returns:
            The channel's messages, oldest first.

        Raises:
            TypeError: If ``channel`` is not a str or an int.
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the read or a message is not botperf's.
        """
        operation = "RedisHistoryStore.get"
        stored = await self._read_history(channel, operation)
        if stored is None:
            return ()
        return _messages(stored, operation)

    async def as_messages(self, channel: ChannelT) -> list[dict[str, str]]:
        """Build the ``messages`` list of a chat request (Ollama, OpenAI) for a channel.

        As ``HistoryStore.as_messages()``: the system prompt first, then the channel's
        summary, then its window, trimmed as ``trim`` says to fit ``max_tokens``, the
        newest message always kept (a prompt over budget then is counted in
        ``HistoryStats.over_budget``, one more round trip). Token counts come from the
        ``append()`` that stored each message; a message appended by a store without
        ``max_tokens`` is counted here. Marks the channel most recently used; an unknown
        channel gives just the system prompt (or ``[]``) and counts as a miss.

        One round trip, plus one when the window moves in a store that tracks it
        (``"stable"``, or with ``on_trim``): the move is made only if no other process
        moved the window meanwhile, else the prompt is read again, so each message
        leaves the window, and goes to ``on_trim``, once cluster-wide.

        Args:
            channel: The channel's key, a str or an int.

        Returns:
            A new list of new dicts, safe to modify.

        Raises:
            TypeError: If ``channel`` is not a str or an int.
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the read or a message is not botperf's.
        """
        operation = "RedisHistoryStore.as_messages"
        member = _member(channel)
        options = self._options
        keys = [
            self._recency,
            self._clock,
            self._stats,
            self._history_key(member),
            self._window_key(member),
        ]
        tracks = "1" if options.tracks else "0"
        counted = "1"
        while True:
            with self._connection.guard(operation):
                reply = await self._prompt(keys=keys, args=[member, counted, tracks])
            if reply is None:
                return options.prompt_start()
            stored, epoch, dropped_field, start_field, overflow, summary_field = reply
            decoded = _decode(stored, operation)
            summary, summary_tokens = self._decode_summary(summary_field, operation)
            counts = None
            if options.max_tokens is not None:
                # Counted here, for messages a store without a budget appended.
                counts = [
                    options.count("content", content) if tokens is None else tokens
                    for _, content, _, tokens in decoded
                ]
            dropped = _number(dropped_field, operation)
            start = _number(start_field, operation)
            relative = max(start - dropped, 0)
            if not options.tracks:
                relative = 0
            elif overflow in (b"1", "1"):
                relative = -1
            first, over_budget = options.first_kept(decoded, counts, relative, summary_tokens)
            if not options.tracks or first == relative:
                break
            with self._connection.guard(operation):
                moved = await self._trim(
                    keys=[self._window_key(member)],
                    args=[epoch or "", start, dropped + first],
                )
            if moved:
                break
            counted = "0"  # another process moved the window: read it again
        if over_budget:
            with self._connection.guard(operation):
                await self._connection.client.hincrby(self._stats, "over_budget", 1)
        prompt = options.prompt_start(summary)
        prompt.extend(
            {"role": role, "content": content}
            for role, content, _, _ in islice(decoded, first, None)
        )
        if options.tracks and first != relative and self._on_trim is not None:
            trimmed = tuple(
                new_tuple(Message, (role, content, author))
                for role, content, author, _ in decoded[max(relative, 0) : first]
            )
            if trimmed:
                await self._report_trim(self._on_trim, channel, trimmed)
        return prompt

    async def set_summary(self, channel: ChannelT, summary: str | None) -> bool:
        """Pin a text to a channel's prompt, right after the system prompt, or remove it.

        As ``HistoryStore.set_summary()``, for every store on the prefix: one atomic
        script, which does nothing to a channel the store does not hold. The summary's
        tokens are counted here (with ``max_tokens`` set) and stored with it.

        Args:
            channel: The channel's key, a str or an int.
            summary: The text, or None to remove the channel's summary.

        Returns:
            Whether the store holds the channel (and so took the summary).

        Raises:
            TypeError: If ``summary`` is not a str or None, or ``channel`` is not a str
                or an int.
            ValueError: If ``count_tokens`` returned something other than a
                non-negative int.
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the update.
        """
        text = check_summary(summary)
        member = _member(channel)
        options = self._options
        encoded = ""
        if text is not None:
            tokens = None if options.max_tokens is None else options.count("summary", text)
            encoded = json.dumps([text, tokens])
        with self._connection.guard("RedisHistoryStore.set_summary"):
            held = await self._summary(
                keys=[self._recency, self._window_key(member)], args=[member, encoded]
            )
        return bool(held)

    async def get_summary(self, channel: ChannelT) -> str | None:
        """Return a channel's summary, or None if it has none or the store does not hold it.

        Does not change recency or count a hit or miss.

        Raises:
            TypeError: If ``channel`` is not a str or an int.
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the read or the summary is not botperf's.
        """
        operation = "RedisHistoryStore.get_summary"
        member = _member(channel)
        with self._connection.guard(operation):
            stored = await self._connection.client.hget(self._window_key(member), "summary")
        return self._decode_summary(stored, operation)[0]

    async def clear(self, channel: ChannelT) -> None:
        """Remove a channel and its history; do nothing if the store does not hold it.

        Removes its summary too. Does not call ``on_evict`` or ``on_trim``, and does not
        count as an eviction.

        Args:
            channel: The channel's key, a str or an int.

        Raises:
            TypeError: If ``channel`` is not a str or an int.
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the update.
        """
        member = _member(channel)
        with self._connection.guard("RedisHistoryStore.clear"):
            await self._clear(
                keys=[
                    self._recency,
                    self._stats,
                    self._history_key(member),
                    self._window_key(member),
                ],
                args=[member],
            )

    async def channels(self) -> list[ChannelT]:
        """Return the channels held, least to most recently used. O(channels).

        Returns:
            A new list; the first channel is the next to be evicted.

        Raises:
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the read or a key is not botperf's.
        """
        operation = "RedisHistoryStore.channels"
        with self._connection.guard(operation):
            # Without withscores, ZRANGE gives members only (redis-py types every form).
            members = cast(
                "list[bytes | str]", await self._connection.client.zrange(self._recency, 0, -1)
            )
        return [cast(ChannelT, _channel(member, operation)) for member in members]

    async def size(self) -> int:
        """Return the number of channels held: ``len(store)`` of ``HistoryStore``. O(1).

        Raises:
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the read.
        """
        with self._connection.guard("RedisHistoryStore.size"):
            return await self._connection.client.zcard(self._recency)

    async def contains(self, channel: object) -> bool:
        """Tell whether the store holds a channel: ``channel in store`` of ``HistoryStore``.

        Does not change recency or count a hit or miss. Any key other than a str or an
        int gives ``False``, as the store cannot hold it.

        Raises:
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the read.
        """
        if type(channel) is not int and type(channel) is not str:
            return False
        with self._connection.guard("RedisHistoryStore.contains"):
            score = await self._connection.client.zscore(self._recency, _member(channel))
        return score is not None

    async def stats(self) -> HistoryStats:
        """Return a snapshot of the counters and sizes, shared by every store on the prefix.

        The counters count the calls of every process since the prefix's keys were
        created; one MULTI/EXEC transaction reads them and the channel count together,
        so the snapshot is consistent. O(1).

        Raises:
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RedisCommandError: If Redis refused the read.
        """
        with self._connection.guard("RedisHistoryStore.stats"):
            async with self._connection.client.pipeline(transaction=True) as pipeline:
                pipeline.hmget(self._stats, list(_COUNTERS))
                pipeline.zcard(self._recency)
                counters, channels = await pipeline.execute()
        values = {
            name: 0 if value is None else int(value)
            for name, value in zip(_COUNTERS, counters, strict=True)
        }
        return HistoryStats(channels=channels, **values)

    def __repr__(self) -> str:
        return (
            f"RedisHistoryStore({self._connection.address}, prefix={self._prefix!r}, "
            f"max_channels={self._options.max_channels}, "
            f"max_messages={self._options.max_messages}, max_tokens={self._options.max_tokens})"
        )

    def _history_key(self, member: str) -> str:
        return f"{self._prefix}h:{member}"

    def _window_key(self, member: str) -> str:
        return f"{self._prefix}w:{member}"

    def _decode_summary(
        self, stored: bytes | str | None, operation: str
    ) -> tuple[str | None, int | None]:
        """Return a stored summary's text and tokens (counted here if stored without)."""
        if stored is None:
            return None, None
        try:
            text, tokens = json.loads(stored)
        except (ValueError, TypeError):
            text = tokens = None
        if type(text) is not str or (tokens is not None and type(tokens) is not int):
            raise RedisCommandError(
                operation, f"a summary was not written by botperf: {stored[:200]!r}"
            )
        if tokens is None and self._options.max_tokens is not None:
            tokens = self._options.count("summary", text)
        return text, tokens

    async def _read_history(self, channel: ChannelT, operation: str) -> bytes | str | None:
        member = _member(channel)
        with self._connection.guard(operation):
            return cast(
                "bytes | str | None",
                await self._read(
                    keys=[self._recency, self._clock, self._stats, self._history_key(member)],
                    args=[member],
                ),
            )

    async def _report_trim(
        self,
        on_trim: Callable[[ChannelT, tuple[Message, ...]], object],
        channel: ChannelT,
        messages: tuple[Message, ...],
    ) -> None:
        try:
            result = on_trim(channel, messages)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_trim callback %r failed for channel %r", on_trim, channel)
            with self._connection.guard("RedisHistoryStore.on_trim"):
                await self._connection.client.hincrby(self._stats, "trim_errors", 1)

    async def _report_eviction(
        self,
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object],
        channel: ChannelT,
        messages: tuple[Message, ...],
    ) -> None:
        try:
            result = on_evict(channel, messages)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_evict callback %r failed for channel %r", on_evict, channel)
            with self._connection.guard("RedisHistoryStore.append"):
                await self._connection.client.hincrby(self._stats, "evict_errors", 1)


def _member(channel: object) -> str:
    """Encode a channel as JSON: ``1`` and ``"1"`` differ, and any str fits in ASCII."""
    if type(channel) is str:
        return json.dumps(channel)
    if type(channel) is int:
        try:
            return json.dumps(channel)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            raise BotperfValueError(
                "channel must be a str, or an int short enough for str() (see "
                f"sys.set_int_max_str_digits), to be kept in Redis; got an int of "
                f"{channel.bit_length()} bits: use a shorter id or a str key",
                name="channel",
                value=channel,
            ) from None
    try:
        hash(channel)
    except TypeError:
        raise unhashable_channel(channel) from None
    raise argument_type_error(
        "channel",
        channel,
        "a str or int to be kept in Redis (JSON keeps only those, with their type)",
    )


def _channel(member: bytes | str, operation: str) -> int | str:
    try:
        channel = json.loads(member)
    except ValueError:
        channel = None
    if type(channel) is not int and type(channel) is not str:
        raise RedisCommandError(operation, f"the channel {member!r} was not written by botperf")
    return channel


def _decode(history: bytes | str, operation: str) -> list[list[Any]]:
    """Decode a history, a JSON array of ``[role, content, author, tokens]`` lists."""
    try:
        decoded = json.loads(history)
    except ValueError:
        decoded = None
    if type(decoded) is not list or any(
        type(item) is not list or len(item) != 4 for item in decoded
    ):
        raise RedisCommandError(
            operation, f"a history holds messages not written by botperf: {history[:200]!r}"
        )
    return decoded


def _number(field: bytes | str | None, operation: str) -> int:
    """Decode a window field written by the scripts: an int, 0 when missing."""
    if field is None:
        return 0
    try:
        return int(field)
    except ValueError:
        raise RedisCommandError(
            operation, f"a window state field {field!r} was not written by botperf"
        ) from None


def _messages(history: bytes | str, operation: str) -> tuple[Message, ...]:
    return tuple(
        new_tuple(Message, (role, content, author))
        for role, content, author, _ in _decode(history, operation)
    )
