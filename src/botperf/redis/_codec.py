"""How RedisDeduplicator turns results into bytes for other processes, and back."""

from __future__ import annotations

import json
from typing import Any, Protocol, final, runtime_checkable

__all__ = ["Codec", "JsonCodec"]


@runtime_checkable
class Codec(Protocol):
    """Turns a result into bytes and back: implement it to share results JSON cannot hold.

    A codec must be deterministic enough that ``decode(encode(value))`` equals
    ``value`` for the results it is used with; every process of a deduplicator must
    use the same codec.
    """

    def encode(self, value: Any) -> bytes:
        """Return ``value`` as bytes; raise (any exception) if it cannot be encoded."""
        ...

    def decode(self, data: bytes) -> Any:
        """Return the value ``encode`` turned into ``data``."""
        ...


@final
class JsonCodec:
    """The default codec: compact JSON (``json.dumps`` / ``json.loads``).

    It keeps str, int, float, bool, None, lists and dicts with str keys; a tuple comes
    back as a list. A result JSON cannot hold makes ``encode`` raise ``TypeError``.
    """

    def encode(self, value: Any) -> bytes:
        """Return ``value`` as compact JSON bytes (ASCII).

        Raises:
            TypeError: If JSON cannot hold ``value``.
            ValueError: If ``value`` holds NaN or an infinity, or a cycle.
        """
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

    def decode(self, data: bytes) -> Any:
        """Return the value ``data`` holds."""
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonCodec()"
