"""Per-channel chat history in an O(1) LRU store that turns into an LLM prompt."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, NamedTuple, NoReturn, cast, final

from typing_extensions import TypeVar

if sys.platform != "win32":
    import fcntl

from ._exceptions import (
    HistoryFileError,
    HistoryFileNotFoundError,
    HistoryTypeError,
    HistoryValueError,
    InvalidOptionError,
    check_int_option,
)

__all__ = ["HistoryStats", "HistoryStore", "Message", "approximate_tokens"]

logger = logging.getLogger(__name__)

ChannelT = TypeVar("ChannelT", bound=Hashable, default=Hashable)

_OWNER = "HistoryStore"
_FORMAT = "botperf.history"
_FORMAT_VERSION = 1


@final
class Message(NamedTuple):
    """One chat message: an immutable ``(role, content, author)`` value.

    Attributes:
        role: Who speaks, as the LLM API names it: ``"user"``, ``"assistant"``, ...
        content: The text.
        author: Optionally, who wrote it (a user name or id as text); kept in the
            history and in dumps, but not sent by ``HistoryStore.as_messages()``.
    """

    role: str
    content: str
    author: str | None = None


@final
@dataclass(frozen=True, slots=True)
class HistoryStats:
    """A snapshot of a ``HistoryStore``'s counters, from ``HistoryStore.stats``.

    Attributes:
        hits: Reads (``get()``, ``as_messages()``) of a channel the store held.
        misses: Reads of a channel it did not hold.
        evictions: Channels dropped because the store held ``max_channels`` of them.
        evict_errors: Calls of the ``on_evict`` callback that raised (each was logged).
        over_budget: Prompts ``as_messages()`` returned over ``max_tokens`` because the
            system prompt and the newest message alone exceed it.
        channels: Channels held now.
        messages: Messages held now, over all channels.
    """

    hits: int
    misses: int
    evictions: int
    evict_errors: int
    over_budget: int
    channels: int
    messages: int


def approximate_tokens(text: str) -> int:
    """Estimate the tokens of ``text`` as ``ceil(len(text) / 4)``: the default token counter.

    Four characters per token is the usual rule of thumb for English text with
    OpenAI- and Llama-style tokenizers. It costs tens of nanoseconds, but it is only
    an estimate: leave headroom in ``max_tokens``, or pass the model's own tokenizer
    as ``count_tokens``.

    Args:
        text: The text to measure.

    Returns:
        The estimated number of tokens (0 for an empty string).
    """
    return (len(text) + 3) // 4


# Message(...) runs namedtuple's Python-level __new__ (about 200 ns); tuple.__new__
# builds the same value from the fields append() has validated in about 90 ns.
_new_tuple = tuple.__new__


class StoreOptions:
    """The checked options every history store keeps: the in-memory and the Redis one."""

    _max_channels: int
    _max_messages: int
    _max_tokens: int | None
    _count_tokens: Callable[[str], int]
    _system_prompt: str | None
    _system_tokens: int

    def _configure(
        self,
        owner: str,
        *,
        max_channels: object,
        max_messages: object,
        max_tokens: object,
        count_tokens: object,
        system_prompt: object,
        on_evict: object,
    ) -> None:
        """Check the store's options, keep them and count the system prompt's tokens.

        Raises:
            InvalidOptionError: If an option is of the wrong type or out of range, or the
                system prompt alone fills ``max_tokens``.
            HistoryValueError: If ``count_tokens`` returns something other than a
                non-negative int for the system prompt.
        """
        self._max_channels = check_int_option(owner, "max_channels", max_channels, minimum=1)
        self._max_messages = check_int_option(owner, "max_messages", max_messages, minimum=1)
        self._max_tokens = (
            None
            if max_tokens is None
            else check_int_option(owner, "max_tokens", max_tokens, minimum=1)
        )
        if count_tokens is not None and not callable(count_tokens):
            raise InvalidOptionError(
                owner, "count_tokens", count_tokens, "a callable str -> int, or None"
            )
        if on_evict is not None and not callable(on_evict):
            raise InvalidOptionError(
                owner, "on_evict", on_evict, "a callable (channel, messages) -> None, or None"
            )
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InvalidOptionError(owner, "system_prompt", system_prompt, "a str or None")
        self._count_tokens = approximate_tokens if count_tokens is None else count_tokens
        self._system_prompt = system_prompt
        self._system_tokens = 0
        if system_prompt is not None and self._max_tokens is not None:
            self._system_tokens = self._count("system_prompt", system_prompt)
            if self._system_tokens >= self._max_tokens:
                raise InvalidOptionError(
                    owner,
                    "max_tokens",
                    max_tokens,
                    f"more than the system prompt's {self._system_tokens} tokens, "
                    "to leave room for messages",
                )

    def _count(self, what: str, text: str) -> int:
        """Return ``count_tokens(text)``, checked to be a non-negative int.

        Raises:
            HistoryValueError: If it is not; ``what`` names the text counted.
        """
        count = self._count_tokens(text)
        if type(count) is not int or count < 0:
            raise HistoryValueError(f"count_tokens({what})", count, "a non-negative int")
        return count


@final
class HistoryStore(StoreOptions, Generic[ChannelT]):
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
        HistoryValueError: If ``count_tokens`` returned something other than a
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
        self._configure(
            _OWNER,
            max_channels=max_channels,
            max_messages=max_messages,
            max_tokens=max_tokens,
            count_tokens=count_tokens,
            system_prompt=system_prompt,
            on_evict=on_evict,
        )
        self._on_evict = on_evict
        self._channels: OrderedDict[ChannelT, deque[Message]] = OrderedDict()
        # Token counts, parallel to each channel's messages; only kept with a budget.
        self._tokens: dict[ChannelT, deque[int]] | None = None if self._max_tokens is None else {}
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
            HistoryTypeError: If ``role``, ``content`` or ``author`` is not a str (or
                ``author`` not None), or ``channel`` is unhashable.
            HistoryValueError: If ``role`` is empty, or ``count_tokens`` returned
                something other than a non-negative int.
        """
        if not isinstance(role, str):
            raise HistoryTypeError("role", role, "a non-empty str such as 'user'")
        if not role:
            raise HistoryValueError("role", role, "a non-empty str such as 'user'")
        if not isinstance(content, str):
            raise HistoryTypeError("content", content, "a str")
        if author is not None and not isinstance(author, str):
            raise HistoryTypeError("author", author, "a str or None")
        channels = self._channels
        try:
            history = channels.get(channel)
        except TypeError:
            raise _unhashable(channel) from None
        tokens = self._tokens
        if tokens is not None:
            # Counted first, so a failing counter leaves the store unchanged.
            count = self._count("content", content)
            counts = tokens.get(channel)
            if counts is None:
                counts = tokens[channel] = deque(maxlen=self._max_messages)
            counts.append(count)
        message = _new_tuple(Message, (role, content, author))
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
            HistoryTypeError: If ``channel`` is unhashable.
        """
        # _touch() inlined: get() is on the hot path, and a call costs ~50 ns.
        channels = self._channels
        try:
            history = channels.get(channel)
        except TypeError:
            raise _unhashable(channel) from None
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
            HistoryTypeError: If ``channel`` is unhashable.
        """
        history = self._touch(channel)
        system_prompt = self._system_prompt
        prompt = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
        if history is None:
            return prompt
        first = 0
        if self._tokens is not None and self._max_tokens is not None:
            first = len(history)
            remaining = self._max_tokens - self._system_tokens
            for count in reversed(self._tokens[channel]):
                remaining -= count
                if remaining < 0:
                    break
                first -= 1
            if first == len(history):
                first -= 1  # the newest message is kept even over budget
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
            HistoryTypeError: If ``channel`` is unhashable.
        """
        try:
            history = self._channels.pop(channel, None)
        except TypeError:
            raise _unhashable(channel) from None
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
            f"max_messages={self._max_messages}, max_tokens={self._max_tokens})"
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
            HistoryTypeError: If a channel key is not a str or an int (JSON keeps only
                those, with their type); nothing is written.
            OSError: If the file cannot be written (a full disk, a missing directory, no
                permission); the error is of the class the OS gave and names ``path``
                (``filename``), which is left as it was.
        """
        text = _encode_document(self._channels.items())
        _write_atomically(os.fspath(path), text)

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
            HistoryFileNotFoundError: If ``path`` does not exist or is a directory.
            HistoryFileError: If the file is truncated, not JSON, nested too deeply, or
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
        file_path = os.fspath(path)
        for channel, messages in _parse_document(file_path, _read_document(file_path)):
            for role, content, author in messages:
                store.append(cast(ChannelT, channel), role, content, author=author)
        return store

    def _touch(self, channel: ChannelT) -> deque[Message] | None:
        try:
            history = self._channels.get(channel)
        except TypeError:
            raise _unhashable(channel) from None
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


def _unhashable(channel: object) -> HistoryTypeError:
    return HistoryTypeError("channel", channel, "a hashable key such as an int or str")


def _refuse(path: str, problem: str, cause: BaseException | None = None) -> NoReturn:
    """Raise the file-format error for a history file that is not a readable dump."""
    raise HistoryFileError(path, problem) from cause


def _naming(error: OSError, path: str, action: str) -> OSError:
    """Return ``error`` as a new error of its class whose ``filename`` is ``path``."""
    return type(error)(error.errno, f"{error.strerror or error} ({action})", path)


# An int key beyond this many bits is written as {"int": "<hex>"}: as a JSON number it
# could exceed `sys.set_int_max_str_digits` (at least 640 digits) when dumped or loaded,
# whereas hexadecimal conversions are never limited.
_MAX_NUMBER_BITS = 2000


def _encode_channel(channel: object) -> object:
    if type(channel) is int:
        return channel if channel.bit_length() <= _MAX_NUMBER_BITS else {"int": hex(channel)}
    if type(channel) is str:
        return channel
    raise HistoryTypeError(
        "channel",
        channel,
        "a str or int to be written by dump() (JSON keeps only those, with their type)",
    )


def _decode_channel(path: str, where: str, channel: object) -> int | str:
    if type(channel) is int or type(channel) is str:
        return channel
    if isinstance(channel, dict) and len(channel) == 1 and type(channel.get("int")) is str:
        try:
            return int(channel["int"], 16)
        except ValueError:
            pass
    _refuse(path, f'{where}["channel"] is not a str or an int')


def _encode_document(channels: Iterable[tuple[object, Iterable[Message]]]) -> str:
    document = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "channels": [
            {"channel": _encode_channel(channel), "messages": list(history)}
            for channel, history in channels
        ],
    }
    return json.dumps(document, separators=(",", ":"))


def _read_document(path: str) -> Any:
    """Read and decode the JSON document at ``path``."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise HistoryFileNotFoundError(path) from None
    except OSError as exc:
        raise _naming(exc, path, "HistoryStore.load() could not read it") from exc
    if not stat.S_ISREG(status.st_mode):
        raise HistoryFileNotFoundError(path)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise HistoryFileNotFoundError(path) from None
    except OSError as exc:
        raise _naming(exc, path, "HistoryStore.load() could not read it") from exc
    except ValueError as exc:  # UnicodeDecodeError
        _refuse(path, f"not valid JSON, truncated or corrupt ({exc})", exc)
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or a number of too many digits
        _refuse(path, f"not valid JSON, truncated or corrupt ({exc})", exc)
    except RecursionError as exc:
        _refuse(path, "nested too deeply to be a history dump", exc)


def _write_atomically(target: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``target``, then rename it over ``target``.

    Raises:
        OSError: Naming ``target``, which is left as it was.
    """
    directory, name = os.path.split(target)
    directory = directory or "."
    mode = _regular_file_mode(target)
    try:
        descriptor, temporary = _create_temporary(directory, name)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                if mode is not None:
                    os.chmod(temporary, mode)
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
                if sys.platform != "win32":
                    # Renamed while still locked, so no other dump takes it for stale.
                    os.replace(temporary, target)
            if sys.platform == "win32":
                os.replace(temporary, target)  # Windows renames no open file
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise _naming(exc, target, "HistoryStore.dump() could not write it") from exc
    _remove_stale_temporaries(directory, name)


_TMP = ".history.tmp"


def _temporary_prefix(name: str) -> str:
    """Return the start of the temporary files' names of dumps to the file ``name``."""
    if len(os.fsencode(name)) > 200:  # keeps the temporary name within NAME_MAX (255)
        name = hashlib.blake2b(os.fsencode(name), digest_size=16).hexdigest()
    return f".{name}."


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """Create and lock a new temporary file for a dump to ``name``; return it and its path.

    The lock, held until the file is renamed, tells other dumps it is not stale.
    """
    prefix = _temporary_prefix(name)
    while True:
        temporary = os.path.join(directory, f"{prefix}{os.urandom(8).hex()}{_TMP}")
        # Created as open(target, "w") would create it: 0o666 less the umask, which the
        # kernel applies here (reading the umask would mean changing it, for all threads).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if sys.platform == "win32":
            return descriptor, temporary
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:
            # No locks here (some network file systems): other dumps cannot take the
            # lock either, and so leave the file alone.
            return descriptor, temporary
        if os.fstat(descriptor).st_nlink > 0:
            return descriptor, temporary
        # Another dump took it for stale between its creation and the lock.
        os.close(descriptor)


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Remove the temporary files that killed dumps to ``name`` left in ``directory``.

    A file is stale when no process holds its lock (a lock ends with its process). On
    Windows, which has no such lock, a file another dump holds open cannot be removed.
    Best effort: a failure leaves the file for the next dump.
    """
    prefix = _temporary_prefix(name)
    try:
        with os.scandir(directory) as entries:
            stale = [
                entry.path
                for entry in entries
                if entry.name.startswith(prefix)
                and entry.name.endswith(_TMP)
                and _is_token(entry.name[len(prefix) : -len(_TMP)])
                and entry.is_file(follow_symlinks=False)
            ]
    except OSError:
        return
    for path in stale:
        with contextlib.suppress(OSError):
            if sys.platform == "win32":
                os.unlink(path)
                continue
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails if in use
                os.unlink(path)
            finally:
                os.close(descriptor)


def _is_token(text: str) -> bool:
    return len(text) == 16 and all(character in "0123456789abcdef" for character in text)


def _regular_file_mode(path: str) -> int | None:
    """Return the permission bits of the regular file at ``path``, or None if there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None  # nothing to keep; creating the new file reports any real problem
    return stat.S_IMODE(status.st_mode) if stat.S_ISREG(status.st_mode) else None


def _parse_document(
    path: str, document: Any
) -> list[tuple[int | str, list[tuple[str, str, str | None]]]]:
    """Check a loaded dump's structure; return its channels, before any is appended."""
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        _refuse(path, f'not a HistoryStore dump (no "format": {_FORMAT!r})')
    if document.get("version") != _FORMAT_VERSION:
        _refuse(
            path,
            f"dump format version {document.get('version')!r} is not supported "
            f"(this botperf reads version {_FORMAT_VERSION})",
        )
    channels = document.get("channels")
    if not isinstance(channels, list):
        _refuse(path, '"channels" is not a list')
    parsed = []
    for index, item in enumerate(channels):
        where = f"channels[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("messages"), list):
            _refuse(path, f'{where} is not an object with a "messages" list')
        channel = _decode_channel(path, where, item.get("channel"))
        messages = []
        for number, message in enumerate(item["messages"]):
            if not (
                isinstance(message, list)
                and len(message) == 3
                and isinstance(message[0], str)
                and message[0]
                and isinstance(message[1], str)
                and (message[2] is None or isinstance(message[2], str))
            ):
                _refuse(
                    path,
                    f"{where}.messages[{number}] is not a [role, content, author] triple "
                    "of a non-empty str, a str and a str or null",
                )
            messages.append((message[0], message[1], message[2]))
        parsed.append((channel, messages))
    return parsed
