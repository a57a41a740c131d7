"""Per-channel chat history in an O(1) LRU store that turns into an LLM prompt."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from itertools import islice
from typing import Any, Generic, cast, final

from typing_extensions import TypeVar

from ._history_base import (
    HistoryStats,
    Message,
    StoreOptions,
    TrimMode,
    approximate_tokens,
    check_message,
    check_summary,
    new_tuple,
    unhashable_channel,
)
from ._history_file import ChannelRecord, read_history, write_history

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
        trim: How a channel's window (the messages ``as_messages()`` sends) follows the
            conversation. ``"sliding"`` (the default) sends the newest messages that
            fit, so once the limits are reached the window's start moves on every turn.
            ``"stable"`` keeps the window's start until the next messages no longer fit
            ``max_tokens`` or ``max_messages``, then trims it to ``stable_fill`` of
            them: the prompt grows by appending, so an LLM server's prompt cache keeps
            its prefix (see the docs' "Prompt caching" section). Either way a window
            never starts on an ``"assistant"`` or ``"tool"`` message.
        stable_fill: For ``"stable"``: after a trim the whole prompt holds at most
            this share of ``max_tokens``, and the window of ``max_messages`` (a number
            above 0 and below 1; default 0.5).
        message_overhead: Tokens a chat template adds to each message (its role
            markers), counted in the budget for the system prompt, the summary and each
            message (an int of at least 0; default 0).
        on_evict: Called as ``on_evict(channel, messages)`` with a channel's whole
            history, oldest first, once, right after the channel is evicted to make
            room. It runs inside the ``append()`` that caused the eviction, so keep it
            quick. If it raises, the error is logged through ``logging`` and counted
            in ``HistoryStats.evict_errors``; the store is already consistent and
            the append goes on. ``clear()`` does not call it.
        on_trim: Called as ``on_trim(channel, messages)`` with the messages that left a
            channel's window for good, oldest first: each message once, whether the
            budget, ``max_messages`` or the rule on answers pushed it out. It runs inside
            the ``as_messages()`` or ``append()`` that trimmed, after the store is
            updated, so keep it quick (hand a summary to a task). If it raises, the
            error is logged and counted in ``HistoryStats.trim_errors``, and the call
            goes on. Not called by ``clear()`` or for evicted channels (``on_evict``).

    Raises:
        InvalidOptionError: If an option is out of range or of the wrong type:
            ``max_channels``, ``max_messages`` or ``max_tokens`` not an int of at least
            1, ``max_tokens`` not above the system prompt's tokens, a non-callable
            ``count_tokens``, ``on_evict`` or ``on_trim``, a non-str ``system_prompt``,
            ``trim`` neither ``"sliding"`` nor ``"stable"``, ``stable_fill`` not above 0
            and below 1, a negative ``message_overhead``. It is both a ``ValueError``
            and a ``TypeError``.
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
        trim: TrimMode = "sliding",
        stable_fill: float = 0.5,
        message_overhead: int = 0,
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
        on_trim: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
    ) -> None:
        options = StoreOptions.check(
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
        self._options = options
        # The limits append() reads, as attributes of the store: one lookup fewer each.
        self._max_channels = options.max_channels
        self._max_messages = options.max_messages
        self._on_evict = on_evict
        self._on_trim = on_trim
        self._stable = options.trim == "stable"
        self._channels: OrderedDict[ChannelT, deque[Message]] = OrderedDict()
        # Token counts, parallel to each channel's messages; only kept with a budget.
        self._tokens: dict[ChannelT, deque[int]] | None = None if options.max_tokens is None else {}
        # The window's state, when tracked (options.tracks): the index of its first
        # message, or -1 once messages of a "stable" window dropped off max_messages
        # before the next prompt (that prompt trims). A channel not in it has 0.
        self._starts: dict[ChannelT, int] | None = {} if options.tracks else None
        # Each channel's summary and its tokens (0 without a budget).
        self._summaries: dict[ChannelT, tuple[str, int]] = {}
        # The per-channel tables besides _channels, emptied of a channel that goes
        # (the summaries once one is set): one check on the eviction path.
        self._purge: tuple[dict[ChannelT, Any], ...] = tuple(
            table for table in (self._tokens, self._starts) if table is not None
        )
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._evict_errors = 0
        self._trim_errors = 0
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
        its oldest one drops off (and goes to ``on_trim`` if it was still in the
        window). O(1), plus one ``count_tokens`` call when ``max_tokens`` is set.

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
        # The checks of check_message() inlined for the common case: a method call shows.
        if type(role) is str and role and type(content) is str and author is None:
            message = new_tuple(Message, (role, content, None))
        else:
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
            if len(history) < self._max_messages:
                self._messages += 1
                history.append(message)
                return
            # A full deque drops its oldest message as it takes this one: no change then,
            # unless the window is tracked and that message was in it.
            if self._starts is None:
                history.append(message)
                return
            self._append_dropping(channel, history, message, self._starts)
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
        for table in self._purge:
            table.pop(evicted, None)
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
        # _touch() inlined: get() is on the hot path, where a method call shows.
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

        The system prompt comes first (role ``"system"``), then the channel's summary if
        one is set (role ``"system"``, see ``set_summary()``), then its window: its
        messages oldest first, as ``{"role": ..., "content": ...}`` dicts (``author``
        is left out). With ``max_tokens`` set, the window holds whole messages, so
        that the whole prompt fits the budget: the system prompt, the summary and each
        message, as ``count_tokens`` counts them, plus ``message_overhead`` per message.
        ``trim`` says which messages: the newest that fit (``"sliding"``), or the same
        window as last time plus the new messages while they fit, else the newest within
        ``stable_fill`` of the limits (``"stable"``). The window starts on its oldest
        message that is not an ``"assistant"`` or ``"tool"`` answer. The newest message
        is always kept: if it does not fit beside the system prompt and the summary,
        the prompt is exactly those, over budget, and ``HistoryStats.over_budget``
        counts it (the system prompt alone never is; the constructor refuses that).
        Messages that leave the window go to ``on_trim``; the stored history
        (``get()``) is not changed.

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
        options = self._options
        if history is None:
            return options.prompt_start()
        summary = self._summaries.get(channel) if self._summaries else None
        starts = self._starts
        start = 0 if starts is None else starts.get(channel, 0)
        first, over_budget = options.first_kept(
            history,
            None if self._tokens is None else self._tokens[channel],
            start,
            None if summary is None else summary[1],
        )
        if over_budget:
            self._over_budget += 1
        prompt = options.prompt_start(None if summary is None else summary[0])
        prompt.extend(
            {"role": message.role, "content": message.content}
            for message in islice(history, first, None)
        )
        if starts is not None and first != start:
            starts[channel] = first
            # From -1 (the window lost messages, already handed over) to 0, none left it.
            if self._on_trim is not None and first > max(start, 0):
                trimmed = tuple(islice(history, max(start, 0), first))
                self._report_trim(self._on_trim, channel, trimmed)
        return prompt

    def set_summary(self, channel: ChannelT, summary: str | None) -> bool:
        """Pin a text to a channel's prompt, right after the system prompt, or remove it.

        ``as_messages()`` sends the summary as a second ``"system"`` message, counted in
        ``max_tokens`` like the rest of the prompt (``count_tokens`` is called once,
        here). Use it to keep what the conversation was about once ``on_trim`` took its
        first messages away: summarize them, then set the summary (see the docs' summary
        recipe). ``clear()`` and eviction remove it; ``dump()`` keeps it. Does nothing to
        a channel the store does not hold, and does not change recency. O(1).

        Args:
            channel: The channel's key.
            summary: The text, or None to remove the channel's summary.

        Returns:
            Whether the store holds the channel (and so took the summary).

        Raises:
            TypeError: If ``summary`` is not a str or None, or ``channel`` is unhashable.
            ValueError: If ``count_tokens`` returned something other than a
                non-negative int.
        """
        text = check_summary(summary)
        try:
            held = channel in self._channels
        except TypeError:
            raise unhashable_channel(channel) from None
        if not held:
            return False
        if text is None:
            self._summaries.pop(channel, None)
            return True
        options = self._options
        count = 0 if options.max_tokens is None else options.count("summary", text)
        if not any(table is self._summaries for table in self._purge):
            # Purged with its channel from now on; until a summary is set, it need not be.
            self._purge = (*self._purge, self._summaries)
        self._summaries[channel] = (text, count)
        return True

    def get_summary(self, channel: ChannelT) -> str | None:
        """Return a channel's summary, or None if it has none or the store does not hold it.

        Does not change recency or count a hit or miss. O(1).

        Raises:
            TypeError: If ``channel`` is unhashable.
        """
        try:
            summary = self._summaries.get(channel)
        except TypeError:
            raise unhashable_channel(channel) from None
        return None if summary is None else summary[0]

    def clear(self, channel: ChannelT) -> None:
        """Remove a channel, its history and its summary; do nothing if it is not held.

        Does not call ``on_evict`` or ``on_trim``, and does not count as an eviction. O(1).

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
        for table in self._purge:
            table.pop(channel, None)

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
            trim_errors=self._trim_errors,
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
        oldest first, its summary and its window's state, so ``load()`` restores both
        orders and a store loaded with the same options builds the same prompts. The
        JSON is written to a temporary file beside ``path``
        (``.<name>.<random>.history.tmp``), flushed to disk, then renamed over ``path``
        (``os.replace()``): a reader, or a crash, sees the old file or the new one,
        never half of one. A successful dump also removes
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
        summaries = self._summaries
        starts = self._starts or {}
        write_history(
            path,
            (
                ChannelRecord(
                    channel,
                    history,
                    None if channel not in summaries else summaries[channel][0],
                    starts.get(channel, 0),
                )
                for channel, history in self._channels.items()
            ),
        )

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
        trim: TrimMode = "sliding",
        stable_fill: float = 0.5,
        message_overhead: int = 0,
        on_evict: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
        on_trim: Callable[[ChannelT, tuple[Message, ...]], object] | None = None,
    ) -> HistoryStore[ChannelT]:
        """Build a store from a file ``dump()`` wrote, with the given options.

        Loading is the same as appending the file's messages, channel by channel (least
        recently used first), to a new store with these options, each channel's summary
        and window state restored with it: channel and message order, recency and
        the prompts are kept (with the options the dumping store had, the same prompts);
        messages that had left a window do not go to ``on_trim`` again. With smaller
        limits than the dumping store had, the least recent channels are evicted
        (``on_evict`` is called for them) and the oldest messages drop off (to
        ``on_trim`` if they were still in the window). Channel keys come back as the str
        or int they were. Counters start at zero.

        Args:
            path: The file to read.
            max_channels: As for ``HistoryStore``.
            max_messages: As for ``HistoryStore``.
            max_tokens: As for ``HistoryStore``.
            count_tokens: As for ``HistoryStore``.
            system_prompt: As for ``HistoryStore``.
            trim: As for ``HistoryStore``.
            stable_fill: As for ``HistoryStore``.
            message_overhead: As for ``HistoryStore``.
            on_evict: As for ``HistoryStore``.
            on_trim: As for ``HistoryStore``.

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
            trim=trim,
            stable_fill=stable_fill,
            message_overhead=message_overhead,
            on_evict=on_evict,
            on_trim=on_trim,
        )
        for record in read_history(path):
            store._restore(cast(ChannelT, record.channel), record)
        return store

    def _restore(self, channel: ChannelT, record: ChannelRecord) -> None:
        """Append a dumped channel's messages, with its window state and summary."""
        starts = self._starts
        for index, (role, content, author) in enumerate(record.messages):
            self.append(channel, role, content, author=author)
            if index == 0 and starts is not None:
                # Set before the other appends, so that those beyond max_messages drop
                # off as they would have in the dumping store (to on_trim only if they
                # had not left the window).
                starts[channel] = record.start if self._stable else max(record.start, 0)
        if record.messages and record.summary is not None:
            self.set_summary(channel, record.summary)

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

    def _append_dropping(
        self,
        channel: ChannelT,
        history: deque[Message],
        message: Message,
        starts: dict[ChannelT, int],
    ) -> None:
        """Append to a full history whose window is tracked: its oldest message drops off."""
        oldest = history[0]
        history.append(message)
        start = starts.get(channel, 0)
        if start > 0:
            # The message had left the window already: the window's index shifts.
            starts[channel] = start - 1
            return
        if self._stable:
            starts[channel] = -1  # the window lost a message: the next prompt trims
        if self._on_trim is not None:
            self._report_trim(self._on_trim, channel, (oldest,))

    def _report_trim(
        self,
        on_trim: Callable[[ChannelT, tuple[Message, ...]], object],
        channel: ChannelT,
        messages: tuple[Message, ...],
    ) -> None:
        try:
            on_trim(channel, messages)
        except Exception:
            self._trim_errors += 1
            logger.exception("on_trim callback %r failed for channel %r", on_trim, channel)

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
