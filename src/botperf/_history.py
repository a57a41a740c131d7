"""Per-channel chat history in an O(1) LRU store that turns into an LLM prompt."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from itertools import islice
from typing import Generic, cast, final

from typing_extensions import TypeVar

from ._history_base import (
    HistoryStats,
    Message,
    StoreOptions,
    approximate_tokens,
    check_message,
    unhashable_channel,
)
from ._history_file import read_history, write_history

__all__ = ["HistoryStats", "HistoryStore", "Message", "approximate_tokens"]

logger = logging.getLogger(__name__)

ChannelT = TypeVar("ChannelT", bound=Hashable, default=Hashable)

_OWNER = "HistoryStore"


@final
class HistoryStore(Generic[ChannelT]):
    """The last messages of each channel, least recently used channel evicted first.

    A channel is any hashable key (a Discord channel id, a ``(guild, user)`` pair);
    ``dump()`` and ``load()`` need ``str`` or ``int`` keys. Each channel keeps its
    newest ``max_messages`` messages; beyond ``max_channels`` channels, the least
    recently used one is dropped whole, so memory stays bounded by
    ``max_channels * max_messages`` messages. Every operation is O(1) in the number of
    channels: an ``OrderedDict`` orders the channels by recency and
    each channel holds a bounded ``deque``.

    Appending to or reading a channel (``append()``, ``get()``,
    ``as_messages()``) marks it most recently used; ``in``, ``len``,
    ``channels()`` and ``stats`` do not.

    Not thread-safe: use one store from one thread or one event loop (all its methods
    are synchronous and never block, except ``dump()`` and ``load()``, which do
    file I/O). Guard it with a lock to share it between threads.

    Args:
        max_channels: Channels held at most (at least 1); the least recently used one
            is evicted to make room for a new one.
        max_messages: Messages kept per channel (at least 1); the oldest drop off.
        max_tokens: Token budget of the whole prompt ``as_messages()`` builds,
            system prompt included (at least 1), or ``None`` for no budget.
        count_tokens: ``str -> int`` counting a text's tokens, called once per appended
            message and once for the system prompt, and only when ``max_tokens`` is
            set. Defaults to ``approximate_tokens()``, ``ceil(len(text) / 4)``.
        system_prompt: Text sent first, as role ``"system"``, by ``as_messages()``;
            never trimmed.
        on_evict: Called as ``on_evict(channel, messages)`` with a channel's whole
            history, oldest first, once, right after the channel is evicted to make
            room. It runs inside the ``append()`` that caused the eviction, so keep it
            quick. If it raises, the error is logged through ``logging`` and counted
            in ``HistoryStats.evict_errors``; the store is already consistent and
            the append goes on. ``clear()`` does not call it.

    Raises:
        InvalidOptionError: If an option is out of range or of the wrong type:
            ``max_channels``, ``max_messages`` or ``max_tokens`` not an int of at least
            1, ``max_tokens`` not above the system prompt's tokens, a non-callable
            ``count_tokens`` or ``on_evict``, a non-str ``system_prompt``. It is both a
            ``ValueError`` and a ``TypeError``.
        ValueError: If ``count_tokens`` returned something other than a
            non-negative int for the system prompt.
    """

    def __init__(
        self,
        *,
        max_channels: int = 1000,
        max_messages: int = 50,
        max_tokens: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        system_prompt: str | None = None,
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
    ) -> None:
        options = StoreOptions.check(
            _OWNER,
            max_channels=max_channels,
            max_messages=max_messages,
            max_tokens=max_tokens,
            count_tokens=count_tokens,
            system_prompt=system_prompt,
            on_evict=on_evict,
        )
        self._options = options
        # The limits append() reads, as attributes of the store: one lookup fewer each.
        self._max_channels = options.max_channels
        self._max_messages = options.max_messages
        self._on_evict = on_evict
        self._channels: OrderedDict[ChannelT, deque[Message]] = OrderedDict()
        # Token counts, parallel to each channel's messages; only kept with a budget.
        self._tokens: dict[ChannelT, deque[int]] | None = None if options.max_tokens is None else {}
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._evict_errors = 0
        self._over_budget = 0
        # Messages held over all channels, kept up to date so that `stats` is O(1).
        self._messages = 0

    def append(
        self, channel: ChannelT, role: str, content: str, *, author: str | None = None
    ) -> None:
        """Add a message to a channel's history and mark the channel most recently used.

        An unknown channel is created; if the store then holds more than
        ``max_channels`` channels, the least recently used one is evicted (and
        ``on_evict`` called). If the channel already holds ``max_messages`` messages,
        its oldest one drops off. O(1), plus one ``count_tokens`` call when
        ``max_tokens`` is set.

        Args:
            channel: The channel's key; any hashable.
            role: The speaker's role, a non-empty str such as ``"user"``.
            content: The message text (may be empty).
            author: Optionally, who wrote it, as a str.

        Raises:
            TypeError: If ``role``, ``content`` or ``author`` is not a str (or
                ``author`` not None), or ``channel`` is unhashable.
            ValueError: If ``role`` is empty, or ``count_tokens`` returned
                something other than a non-negative int.
        """
        message = check_message(role, content, author)
        channels = self._channels
        try:
            history = channels.get(channel)
        except TypeError:
            raise unhashable_channel(channel) from None
        tokens = self._tokens
        if tokens is not None:
            # Counted first, so a failing counter leaves the store unchanged.
            count = self._options.count("content", content)
            counts = tokens.get(channel)
            if counts is None:
                counts = tokens[channel] = deque(maxlen=self._max_messages)
            counts.append(count)
        if history is not None:
            channels.move_to_end(channel)
            # A full deque drops its oldest message as it takes this one: no change then.
            if len(history) < self._max_messages:
                self._messages += 1
            history.append(message)
            return
        channels[channel] = deque((message,), maxlen=self._max_messages)
        if len(channels) <= self._max_channels:
            self._messages += 1
            return
        # Eviction inlined: under churn half the appends evict. on_evict runs last,
        # so it sees (and may use) a store that has finished this append.
        evicted, evicted_history = channels.popitem(last=False)
        self._evictions += 1
        self._messages += 1 - len(evicted_history)
        if tokens is not None:
            del tokens[evicted]
        if self._on_evict is not None:
            self._report_eviction(self._on_evict, evicted, evicted_history)

    def get(self, channel: ChannelT) -> tuple[Message, ...]:
        """Return a channel's messages, oldest first, and mark it most recently used.

        An unknown channel gives ``()``, is not created, and counts as a miss. O(1) in
        the number of channels, O(messages) to copy the history.

        Args:
            channel: The channel's key.

        Returns:
            The channel's messages, oldest first.

        Raises:
            TypeError: If ``channel`` is unhashable.
        """
        # _touch() inlined: get() is on the hot path, and a call costs ~50 ns.
        channels = self._channels
        try:
            history = channels.get(channel)
        except TypeError:
            raise unhashable_channel(channel) from None
        if history is None:
            self._misses += 1
            return ()
        self._hits += 1
        channels.move_to_end(channel)
        return tuple(history)

    def as_messages(self, channel: ChannelT) -> list[dict[str, str]]:
        """Build the ``messages`` list of a chat request (Ollama, OpenAI) for a channel.

        The system prompt comes first (role ``"system"``), then the channel's messages
        oldest first, as ``{"role": ..., "content": ...}`` dicts (``author`` is left
        out). With ``max_tokens`` set, whole messages are dropped oldest first until the
        prompt fits the budget (the tokens of the contents and the system prompt, as
        ``count_tokens`` counts them; the few tokens an API adds per message are not
        counted, so leave headroom). The system prompt and the newest message are always
        kept: if those two alone exceed the budget the prompt is exactly them, over
        budget, and ``HistoryStats.over_budget`` counts it (the system prompt alone
        never does; the constructor refuses that). The stored history is never changed.

        Marks the channel most recently used; an unknown channel gives just the system
        prompt (or ``[]``), is not created, and counts as a miss. O(messages), without
        calling ``count_tokens``: ``append()`` counted each message once.

        Args:
            channel: The channel's key.

        Returns:
            A new list of new dicts, safe to modify.

        Raises:
            TypeError: If ``channel`` is unhashable.
        """
        history = self._touch(channel)
        prompt = self._options.prompt_start()
        if history is None:
            return prompt
        first = 0
        if self._tokens is not None:
            first, over_budget = self._options.first_kept(
                reversed(self._tokens[channel]), len(history)
            )
            if over_budget:
                self._over_budget += 1
        prompt.extend(
            {"role": message.role, "content": message.content}
            for message in islice(history, first, None)
        )
        return prompt

    def clear(self, channel: ChannelT) -> None:
        """Remove a channel and its history; do nothing if the store does not hold it.

        Does not call ``on_evict`` and does not count as an eviction. O(1).

        Args:
            channel: The channel's key.

        Raises:
            TypeError: If ``channel`` is unhashable.
        """
        try:
            history = self._channels.pop(channel, None)
        except TypeError:
            raise unhashable_channel(channel) from None
        if history is not None:
            self._messages -= len(history)
        if self._tokens is not None:
            self._tokens.pop(channel, None)

    def channels(self) -> list[ChannelT]:
        """Return the channels held, least to most recently used. O(channels).

        Returns:
            A new list; the first channel is the next to be evicted.
        """
        return list(self._channels)

    @property
    def stats(self) -> HistoryStats:
        """A snapshot of the counters (hits, misses, evictions, ...) and sizes. O(1)."""
        return HistoryStats(
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            evict_errors=self._evict_errors,
            over_budget=self._over_budget,
            channels=len(self._channels),
            messages=self._messages,
        )

    def __len__(self) -> int:
        return len(self._channels)

    def __contains__(self, channel: object) -> bool:
        try:
            return channel in self._channels
        except TypeError:
            return False

    def __repr__(self) -> str:
        return (
            f"HistoryStore(channels={len(self._channels)}/{self._max_channels}, "
            f"max_messages={self._max_messages}, max_tokens={self._options.max_tokens})"
        )

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Write every channel's history to a JSON file, atomically.

        The file lists the channels least to most recently used, each with its messages
        oldest first, so ``load()`` restores both orders. The JSON is written to a
        temporary file beside ``path`` (``.<name>.<random>.history.tmp``), flushed to
        disk, then renamed over ``path`` (``os.replace()``): a reader, or a crash, sees
        the old file or the new one, never half of one. A successful dump also removes
        the temporary files that killed dumps to ``path`` left behind. The new file
        keeps the permission bits of the file it replaces (not its owner); a file new
        to ``path`` gets those of a plain ``open(path, "w")``. Counters are not written.
        This is blocking file I/O in the calling thread; the store is not thread-safe,
        so do not hand the call to a worker thread while the event loop may still use
        the store.

        Args:
            path: The file to write; its directory must exist.

        Raises:
            TypeError: If a channel key is not a str or an int (JSON keeps only
                those, with their type); nothing is written.
            OSError: If the file cannot be written (a full disk, a missing directory, no
                permission); the error is of the class the OS gave and names ``path``
                (``filename``), which is left as it was.
        """
        write_history(path, self._channels.items())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        max_channels: int = 1000,
        max_messages: int = 50,
        max_tokens: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        system_prompt: str | None = None,
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
    ) -> HistoryStore[ChannelT]:
        """Build a store from a file ``dump()`` wrote, with the given options.

        Loading is the same as appending the file's messages, channel by channel (least
        recently used first), to a new store with these options: channel and message
        order and recency are kept; with smaller limits than the dumping store had, the
        least recent channels are evicted (``on_evict`` is called for them) and the
        oldest messages drop off. Channel keys come back as the str or int they were.
        Counters start at zero.

        Args:
            path: The file to read.
            max_channels: As for ``HistoryStore``.
            max_messages: As for ``HistoryStore``.
            max_tokens: As for ``HistoryStore``.
            count_tokens: As for ``HistoryStore``.
            system_prompt: As for ``HistoryStore``.
            on_evict: As for ``HistoryStore``.

        Returns:
            The new store.

        Raises:
            FileNotFoundError: If ``path`` does not exist or is a directory.
            FileFormatError: If the file is truncated, not JSON, nested too deeply, or
                not a history dump; the message names the file and the problem.
            OSError: If the file cannot be read (no permission, an I/O error); the
                error is of the class the OS gave and names ``path`` (``filename``).
            InvalidOptionError: If an option is out of range or of the wrong type.
        """
        store = cls(
            max_channels=max_channels,
            max_messages=max_messages,
            max_tokens=max_tokens,
            count_tokens=count_tokens,
            system_prompt=system_prompt,
            on_evict=on_evict,
        )
        for channel, messages in read_history(path):
            for role, content, author in messages:
                store.append(cast(ChannelT, channel), role, content, author=author)
        return store

    def _touch(self, channel: ChannelT) -> deque[Message] | None:
        try:
            history = self._channels.get(channel)
        except TypeError:
            raise unhashable_channel(channel) from None
        if history is None:
            self._misses += 1
            return None
        self._hits += 1
        self._channels.move_to_end(channel)
        return history

    def _report_eviction(
        self,
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object],
        channel: ChannelT,
        history: deque[Message],
    ) -> None:
        try:
            on_evict(channel, tuple(history))
        except Exception:
            self._evict_errors += 1
            logger.exception("on_evict callback %r failed for channel %r", on_evict, channel)
