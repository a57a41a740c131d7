"""Encoding a batch of metric events into the bytes of JSON lines.

Two encoders produce the same lines: ``orjson`` when it is importable (several times
faster) and the stdlib `json` otherwise. Both write compact JSON objects, one per
line, ASCII-safe for the stdlib and UTF-8 for orjson; the lines parse to equal values
(only the spelling of some floats differs, such as ``1e-05`` against ``0.00001``).

A value JSON cannot hold never fails its batch: non-finite floats are written as
``null`` (what orjson does), an `enum.Enum` as its value, a `uuid.UUID`
as its string, and anything else as its ``repr()`` string (``<unrepresentable
TypeName>`` if ``repr()`` itself raises), counted in `EncodedBatch.repr_values`.
Dict keys follow the same rules: an enum key becomes its value and a UUID key its
string (int, float, bool and ``None`` keys are spelled as JSON spells them); a field
holding a dict with any other key (a tuple, a datetime) is written as its ``repr()``.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

from ._exceptions import InvalidOptionError, safe_repr

__all__ = [
    "ENCODER_NAMES",
    "HAVE_ORJSON",
    "EncodedBatch",
    "EncoderName",
    "encode_batch",
    "encode_entries",
    "resolve_encoder",
]

EncoderName = Literal["auto", "json", "orjson"]

try:
    import orjson

    HAVE_ORJSON = True
except ImportError:  # pragma: no cover - orjson is installed in the test environment
    HAVE_ORJSON = False

# The C encoder behind json.dumps; None on Pythons without the C accelerator.
c_make_encoder: Callable[..., Callable[[object, int], Sequence[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)

_ORJSON_OPTIONS = 0
if HAVE_ORJSON:
    # Pass dataclasses and datetimes to the fallback, so they become repr() strings as
    # with the stdlib encoder, instead of orjson's own rendering. No OPT_NON_STR_KEYS:
    # orjson would spell enum, UUID and datetime keys its own way, so an event with a
    # key that is not a str takes the careful path, which both encoders share.
    _ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


@dataclass(frozen=True)
class EncodedBatch:
    """A batch encoded as JSON lines.

    Attributes:
        data: The lines, each ending in a newline, as UTF-8 bytes.
        repr_values: How many values were written as their ``repr()`` string because
            JSON cannot hold them.
    """

    data: bytes
    repr_values: int


ENCODER_NAMES: tuple[EncoderName, ...] = ("auto", "json", "orjson")


def resolve_encoder(name: object, *, owner: str) -> Literal["json", "orjson"]:
    """Return the encoder to use for ``name``: ``"auto"`` picks orjson when importable.

    Args:
        name: The ``encoder`` option as given.
        owner: The class it was given to, named in the error.

    Raises:
        InvalidOptionError: If ``name`` is not one of `ENCODER_NAMES`.
        ImportError: If ``"orjson"`` is asked for and it is not installed.
    """
    if name == "auto":
        return "orjson" if HAVE_ORJSON else "json"
    if name == "json":
        return "json"
    if name == "orjson":
        if not HAVE_ORJSON:  # pragma: no cover - orjson is installed in the test environment
            raise ImportError("encoder='orjson' needs orjson: pip install 'botperf[fast]'")
        return "orjson"
    raise InvalidOptionError(
        owner, "encoder", name, f"one of {', '.join(map(repr, ENCODER_NAMES))}"
    )


def encode_batch(
    events: Sequence[dict[str, Any]], encoder: Literal["json", "orjson"]
) -> EncodedBatch:
    """Encode ``events`` as JSON lines in one bytes object; O(total size of the events).

    Args:
        events: The events, each a dict with string keys.
        encoder: ``"json"`` (stdlib) or ``"orjson"``.

    Returns:
        The encoded batch and how many values were written as ``repr()`` strings.
    """
    if encoder == "orjson":
        return _encode_orjson(events)
    return _encode_json(events)


def encode_entries(
    entries: Sequence[tuple[float, str, dict[str, Any]]], encoder: Literal["json", "orjson"]
) -> EncodedBatch:
    """Encode ``(ts, event, fields)`` entries as JSON lines: ``ts``, ``event``, then the fields.

    The same lines as `encode_batch` of the merged event dicts, without a list of them
    in between; with orjson, a batch with no value that needs the fallback is encoded
    without passing it the fallback hook. O(total size of the events).

    Args:
        entries: The events as `botperf.BatchMetricsWriter` keeps them.
        encoder: ``"json"`` (stdlib) or ``"orjson"``.

    Returns:
        The encoded batch and how many values were written as ``repr()`` strings.
    """
    if encoder == "orjson":
        dumps = orjson.dumps
        options = _ORJSON_OPTIONS | orjson.OPT_APPEND_NEWLINE
        try:
            return EncodedBatch(
                b"".join(
                    [
                        dumps({"ts": ts, "event": name, **fields}, option=options)
                        for ts, name, fields in entries
                    ]
                ),
                0,
            )
        except Exception:  # a value for the fallback, or one orjson refuses: the full path
            pass
    return encode_batch(
        [{"ts": ts, "event": name, **fields} for ts, name, fields in entries], encoder
    )


class _Fallback:
    """The ``default`` hook of both encoders: counts the values it turns into strings."""

    __slots__ = ("repr_values",)

    def __init__(self) -> None:
        self.repr_values = 0

    def __call__(self, value: object) -> object:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, uuid.UUID):
            return str(value)
        self.repr_values += 1
        return safe_repr(value)


def _encode_orjson(events: Sequence[dict[str, Any]]) -> EncodedBatch:
    fallback = _Fallback()
    dumps = orjson.dumps
    options = _ORJSON_OPTIONS | orjson.OPT_APPEND_NEWLINE
    try:
        data = b"".join([dumps(event, default=fallback, option=options) for event in events])
    except Exception:
        # Some event holds what orjson refuses (an int beyond 64 bits, a lone surrogate,
        # a tuple key): encode event by event, those through the careful stdlib path.
        fallback = _Fallback()
        lines = []
        for event in events:
            counted = fallback.repr_values
            try:
                lines.append(dumps(event, default=fallback, option=options))
            except Exception:
                fallback.repr_values = counted
                lines.append(_encode_carefully(event, fallback).encode() + b"\n")
        data = b"".join(lines)
    return EncodedBatch(data, fallback.repr_values)


def _make_fast_json(fallback: _Fallback) -> Callable[[object], str]:
    """Return a compact stdlib encoder with no circularity check and ``allow_nan=False``.

    Calling the C encoder directly skips the per-call setup of `json.dumps` (a
    large part of its cost for a small event); a cycle then ends in `RecursionError`,
    which the careful path catches.
    """
    if c_make_encoder is None:  # pragma: no cover - CPython always has the C accelerator
        return json.JSONEncoder(
            separators=(",", ":"), allow_nan=False, check_circular=False, default=fallback
        ).encode
    make_chunks = c_make_encoder(
        None, fallback, encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def encode(value: object) -> str:
        return "".join(make_chunks(value, 0))

    return encode


def _encode_json(events: Sequence[dict[str, Any]]) -> EncodedBatch:
    fallback = _Fallback()
    encode = _make_fast_json(fallback)
    lines = []
    for event in events:
        counted = fallback.repr_values
        try:
            lines.append(encode(event))
        except Exception:
            fallback.repr_values = counted
            lines.append(_encode_carefully(event, fallback))
    lines.append("")
    return EncodedBatch("\n".join(lines).encode(), fallback.repr_values)


def _encode_carefully(event: dict[str, Any], fallback: _Fallback) -> str:
    """Encode one event field by field; a field that still fails becomes its repr()."""
    safe: dict[str, Any] = {}
    for key, value in event.items():
        try:
            cleaned = _plain(value)
            json.dumps(cleaned, allow_nan=False, default=_Fallback())
        except Exception:  # whatever a value's own methods raise stays in its field
            fallback.repr_values += 1
            cleaned = safe_repr(value)
        safe[str(key)] = cleaned
    return json.dumps(safe, separators=(",", ":"), allow_nan=False, default=fallback)


def _plain(value: object) -> object:
    """Return ``value`` as JSON can hold it, at any depth.

    Non-finite floats become ``None``; dict keys that are enums become their value, and
    UUID keys their string, as the values would. Other keys JSON cannot hold (a tuple,
    a datetime) are left for ``json.dumps`` to refuse, so the field is written as its
    ``repr()``.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_plain_key(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _plain_key(key: object) -> object:
    if isinstance(key, enum.Enum):
        return _plain_key(key.value)
    if isinstance(key, uuid.UUID):
        return str(key)
    return key
