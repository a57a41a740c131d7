"""The file `HistoryStore.dump()` writes and `HistoryStore.load()` reads.

A JSON document, ``{"format": "botperf.history", "version": 1, "channels": [...]}``,
each channel ``{"channel": key, "messages": [[role, content, author], ...]}``, least
recently used first, with optional keys: ``"summary"`` (its text), ``"trimmed"`` (how many
of the first messages have left the window) and ``"overflow": true`` (messages of a
``"stable"`` window dropped off ``max_messages`` since the last prompt). Files without
them, as older botperf wrote, read as no summary and nothing trimmed. It is written to a
locked temporary file beside the target and renamed over it, so readers and crashes see
the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterable
from typing import Any, NamedTuple, NoReturn, TypeAlias

from ._exceptions import BotperfFileNotFoundError, FileFormatError
from ._history_base import argument_type_error

if sys.platform != "win32":
    import fcntl

__all__ = ["ChannelRecord", "read_history", "write_history"]

_FORMAT = "botperf.history"
_FORMAT_VERSION = 1

# A message as the file holds it: role, content, author.
Fields: TypeAlias = tuple[str, str, str | None]


class ChannelRecord(NamedTuple):
    """One channel of a dump: its key, messages, summary and window state.

    ``start`` is the store's window state: how many of the first messages have left the
    window, or -1 when messages of a ``"stable"`` window dropped off since its last prompt.
    """

    channel: object
    messages: Iterable[Fields]
    summary: str | None
    start: int


def write_history(path: str | os.PathLike[str], channels: Iterable[ChannelRecord]) -> None:
    """Write ``channels`` to ``path`` atomically, as `dump()` documents.

    Raises:
        TypeError: If a key is not a str or an int; nothing is written.
        OSError: Of the class the OS gave, naming ``path``, which is left as it was.
    """
    _write_atomically(os.fspath(path), _encode_document(channels))


def read_history(path: str | os.PathLike[str]) -> list[ChannelRecord]:
    """Read the channels of the dump at ``path``, as `load()` documents.

    Each record's ``channel`` is an int or a str, its ``messages`` a list.

    Raises:
        FileNotFoundError: If ``path`` does not exist or is not a regular file.
        FileFormatError: If the file is not a dump botperf can read.
        OSError: Of the class the OS gave, naming ``path``.
    """
    file_path = os.fspath(path)
    return _parse_document(file_path, _read_document(file_path))


def _refuse(path: str, problem: str, cause: BaseException | None = None) -> NoReturn:
    """Raise the file-format error for a history file that is not a readable dump."""
    raise FileFormatError(
        f"cannot load history from {path!r}: {problem}; "
        "load() reads the JSON files HistoryStore.dump() writes",
        path=path,
        line=None,
    ) from cause


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
    raise argument_type_error(
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


def _encode_record(record: ChannelRecord) -> dict[str, object]:
    item: dict[str, object] = {
        "channel": _encode_channel(record.channel),
        "messages": list(record.messages),
    }
    if record.summary is not None:
        item["summary"] = record.summary
    if record.start > 0:
        item["trimmed"] = record.start
    elif record.start < 0:
        item["overflow"] = True
    return item


def _encode_document(channels: Iterable[ChannelRecord]) -> str:
    document = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "channels": [_encode_record(record) for record in channels],
    }
    return json.dumps(document, separators=(",", ":"))


def _not_found(path: str) -> FileNotFoundError:
    return BotperfFileNotFoundError(
        f"no history file at {path!r}: check the path, or start from an empty "
        "HistoryStore() when there is nothing saved yet",
        path,
    )


def _read_document(path: str) -> Any:
    """Read and decode the JSON document at ``path``."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(path) from None
    except OSError as exc:
        raise _naming(exc, path, "HistoryStore.load() could not read it") from exc
    if not stat.S_ISREG(status.st_mode):
        raise _not_found(path)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
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


def _parse_document(path: str, document: Any) -> list[ChannelRecord]:
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
        messages: list[Fields] = []
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
        parsed.append(
            ChannelRecord(
                channel,
                messages,
                _parse_summary(path, where, item),
                _parse_start(path, where, item, len(messages)),
            )
        )
    return parsed


def _parse_summary(path: str, where: str, item: dict[str, Any]) -> str | None:
    summary = item.get("summary")
    if summary is not None and not isinstance(summary, str):
        _refuse(path, f'{where}["summary"] is not a str')
    return summary


def _parse_start(path: str, where: str, item: dict[str, Any], length: int) -> int:
    """Return a channel's window state: messages trimmed, or -1 for an overflowed window."""
    trimmed = item.get("trimmed", 0)
    if type(trimmed) is not int or not 0 <= trimmed < max(length, 1):
        _refuse(
            path,
            f'{where}["trimmed"] is not an int from 0 to one less than its messages '
            "(the window keeps at least the newest)",
        )
    overflow = item.get("overflow", False)
    if type(overflow) is not bool or (overflow and trimmed):
        _refuse(path, f'{where}["overflow"] is not a bool, or is true beside "trimmed"')
    return -1 if overflow else trimmed
