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

from .._history_base import (
    HistoryStats,
    Message,
    StoreOptions,
    argument_type_error,
    check_message,
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
# return a history as one JSON array: redis-py's pure-Python reply parser costs a few
# microseconds per element, so 50 messages as one string are read 20x faster than
# as 50, and decoded with one json.loads.

_APPEND = """
local recency, clock, stats, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, message, prefix = ARGV[1], ARGV[2], ARGV[3]
local max_messages, max_channels = tonumber(ARGV[4]), tonumber(ARGV[5])
local length = redis.call('RPUSH', history, message)
local dropped = 0
if length > max_messages then
    redis.call('LTRIM', history, -max_messages, -1)
    dropped = length - max_messages
end
redis.call('HINCRBY', stats, 'messages', 1 - dropped)
redis.call('ZADD', recency, redis.call('INCR', clock), member)
local evicted = {}
while redis.call('ZCARD', recency) > max_channels do
    local oldest = redis.call('ZPOPMIN', recency)[1]
    local key = prefix .. 'h:' .. oldest
    local messages = redis.call('LRANGE', key, 0, -1)
    redis.call('DEL', key)
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

_CLEAR = """
local recency, stats, history = KEYS[1], KEYS[2], KEYS[3]
if redis.call('ZREM', recency, ARGV[1]) == 1 then
    redis.call('HINCRBY', stats, 'messages', -redis.call('LLEN', history))
    redis.call('DEL', history)
end
"""

_COUNTERS = ("hits", "misses", "evictions", "evict_errors", "over_budget", "messages")


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
    counter that orders it), ``stats`` (a hash of counters) and ``h:<channel>`` (a list
    of JSON messages per channel). Channels are str or int keys, stored as JSON so
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
        on_evict: Called as ``on_evict(channel, messages)`` once, cluster-wide, in the
            process whose ``append()`` evicted the channel, after Redis removed it. It
            may be a plain function or return an awaitable, which is awaited. If it
            raises, the error is logged and counted in ``HistoryStats.evict_errors``,
            and the append goes on.

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
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
    ) -> None:
        self._options = StoreOptions.check(
            _OWNER,
            max_channels=max_channels,
            max_messages=max_messages,
            max_tokens=max_tokens,
            count_tokens=count_tokens,
            system_prompt=system_prompt,
            on_evict=on_evict,
        )
        self._on_evict = on_evict
        check_client_options(_OWNER, redis, prefix, timeout, example_prefix="bot:history:")
        self._connection = Connection(redis, timeout)
        client = self._connection.client
        self._prefix = prefix
        self._recency = f"{prefix}recency"
        self._clock = f"{prefix}clock"
        self._stats = f"{prefix}stats"
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)
        self._clear = client.register_script(_CLEAR)

    async def append(
        self, channel: ChannelT, role: str, content: str, *, author: str | None = None
    ) -> None:
        """Add a message to a channel's history and mark the channel most recently used.

        As ``HistoryStore.append()``, in one atomic Redis script: an unknown channel is
        created, the oldest message beyond ``max_messages`` drops off, and the least
        recently used channels beyond ``max_channels`` are evicted (``on_evict`` is then
        called here, once per evicted channel).

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
            evicted = await self._append(
                keys=[self._recency, self._clock, self._stats, self._history_key(member)],
                args=[member, encoded, self._prefix, options.max_messages, options.max_channels],
            )
        on_evict = self._on_evict
        if on_evict is not None:
            # The script returns [channel, history, channel, history, ...].
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
        messages oldest first, whole messages dropped oldest first to fit
        ``max_tokens``, the newest message always kept (a prompt over budget then is
        counted in ``HistoryStats.over_budget``, one more round trip). Token counts
        come from the ``append()`` that stored each message; a message appended by a
        store without ``max_tokens`` is counted here. Marks the channel most recently
        used; an unknown channel gives just the system prompt (or ``[]``) and counts
        as a miss.

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
        stored = await self._read_history(channel, operation)
        options = self._options
        prompt = options.prompt_start()
        if stored is None:
            return prompt
        decoded = _decode(stored, operation)
        # Counted here, lazily, for messages a store without a budget appended.
        counts = (
            options.count("content", content) if tokens is None else tokens
            for _, content, _, tokens in reversed(decoded)
        )
        first, over_budget = options.first_kept(counts, len(decoded))
        if over_budget:
            with self._connection.guard(operation):
                await self._connection.client.hincrby(self._stats, "over_budget", 1)
        prompt.extend(
            {"role": role, "content": content}
            for role, content, _, _ in islice(decoded, first, None)
        )
        return prompt

    async def clear(self, channel: ChannelT) -> None:
        """Remove a channel and its history; do nothing if the store does not hold it.

        Does not call ``on_evict`` and does not count as an eviction.

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
                keys=[self._recency, self._stats, self._history_key(member)], args=[member]
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
    if type(channel) is int or type(channel) is str:
        return json.dumps(channel)
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


# Builds a Message without namedtuple's Python-level __new__: get() makes one per message.
_new_tuple = tuple.__new__


def _messages(history: bytes | str, operation: str) -> tuple[Message, ...]:
    return tuple(
        _new_tuple(Message, (role, content, author))
        for role, content, author, _ in _decode(history, operation)
    )
