"""A BatchMetricsWriter sink that appends each batch to a Redis stream."""

from __future__ import annotations

from typing import Any, final

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._encoding import EncoderName, encode_batch, resolve_encoder
from .._exceptions import InvalidOptionError
from .._options import check_seconds_option
from ._connection import address_of, translate_errors

__all__ = ["RedisStreamSink"]

_OWNER = "RedisStreamSink"


@final
class RedisStreamSink:
    """A ``MetricsSink`` appending each batch of events to a Redis stream, for every process.

    Each event becomes one stream entry with one field, ``json``: the event as the JSON
    object a ``JsonLinesFileSink`` would write as a line (``ts``, ``event``, then the
    fields; a value JSON cannot hold is written as its ``repr()``). A batch is one
    ``MULTI`` / ``XADD ... MAXLEN ~ maxlen`` per event / ``EXEC`` pipeline: one round
    trip, and all of the batch or none of it, as the sink protocol asks. A batch that
    fails (Redis down, no answer within ``timeout``) raises, and the writer keeps it and
    retries it with backoff; if the reply of a batch Redis did apply is lost, the retry
    adds it again (at-least-once delivery).

    The writer calls the sink from a worker thread, so it uses redis-py's synchronous
    client and works whether the writer runs on asyncio, trio or a plain thread. Read
    the stream with ``XRANGE`` / ``XREAD`` (or ``XREADGROUP`` for consumers that
    share the work), and ``json.loads`` each entry's ``json`` field.

    Args:
        redis: A synchronous ``redis.Redis`` client, used as it is and never closed by
            the sink (give it ``socket_timeout`` and ``socket_connect_timeout``); or a
            URL such as ``"redis://localhost:6379/0"``, from which the sink builds a
            client with both timeouts set to ``timeout`` and without retries of its own
            (the writer retries), closed by ``close()``.
        stream: The stream's key (a non-empty str).
        maxlen: The length the stream is trimmed to, at least 1; ``None`` never trims.
        approximate: Trim with ``MAXLEN ~`` (the default): Redis trims whole internal
            nodes only, so the stream may hold somewhat more than ``maxlen`` entries,
            and trimming costs almost nothing. ``False`` trims exactly, at some cost.
        timeout: Seconds to connect, and to wait for each reply, for a client built
            from a URL (above 0).
        encoder: ``"auto"`` (orjson when importable), ``"json"`` or ``"orjson"``.

    Raises:
        InvalidOptionError: If ``stream`` is empty, ``maxlen`` not an int of at least 1
            or None, ``timeout`` not above 0, ``encoder`` unknown, or ``redis`` not a
            ``redis.Redis`` client or a URL.
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        stream: str = "botperf:metrics",
        maxlen: int | None = 100_000,
        approximate: bool = True,
        timeout: float = 5.0,
        encoder: EncoderName = "auto",
    ) -> None:
        if type(stream) is not str or not stream:
            raise InvalidOptionError(_OWNER, "stream", stream, "a non-empty str")
        if maxlen is not None and (type(maxlen) is not int or maxlen < 1):
            raise InvalidOptionError(_OWNER, "maxlen", maxlen, "an int of at least 1, or None")
        check_seconds_option(_OWNER, "timeout", timeout)
        self._encoder = resolve_encoder(encoder, owner=_OWNER)
        if isinstance(redis, str):
            self._client = Redis.from_url(
                redis,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), retries=0),
            )
            self._owned = True
        elif isinstance(redis, Redis):
            self._client = redis
            self._owned = False
        else:
            raise InvalidOptionError(
                _OWNER,
                "redis",
                redis,
                "a redis.Redis client or a URL such as 'redis://host:6379/0'",
            )
        self._address = address_of(self._client)
        self._stream = stream
        self._maxlen = maxlen
        self._approximate = approximate
        self._repr_values = 0

    @property
    def stream(self) -> str:
        """The stream's key."""
        return self._stream

    @property
    def repr_values(self) -> int:
        """Values written as their ``repr()`` string because JSON cannot hold them."""
        return self._repr_values

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        """Append the batch to the stream: one entry per event, in one round trip.

        Args:
            events: The events in the order recorded.

        Raises:
            RedisUnavailableError: If Redis cannot be reached or does not answer within
                the timeout; nothing was added (unless the lost reply was the
                ``EXEC``'s).
            RuntimeError: If Redis refused the batch (the key holds another type, out
                of memory) or the password or ACL user; nothing was added.
        """
        encoded = encode_batch(events, self._encoder)
        # Each event is one line: JSON escapes the newlines inside strings.
        lines = encoded.data.split(b"\n")[:-1]
        with (
            translate_errors(self._address, "RedisStreamSink.write_batch"),
            self._client.pipeline(transaction=True) as pipeline,
        ):
            for line in lines:
                pipeline.xadd(
                    self._stream,
                    {"json": line},
                    maxlen=self._maxlen,
                    approximate=self._approximate,
                )
            pipeline.execute()
        self._repr_values += encoded.repr_values

    def close(self) -> None:
        """Close the client if the sink built it from a URL; a given client stays open."""
        if self._owned:
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisStreamSink({self._address}, stream={self._stream!r}, maxlen={self._maxlen})"
