from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis import Redis
from redis_server import free_port

from botperf import (
    BatchMetricsWriter,
    InvalidOptionError,
    MetricsNotWrittenError,
    MetricsSink,
)
from botperf.redis import RedisStreamSink, RedisUnavailableError
from botperf.redis._errors import RedisCommandError


@pytest.fixture
def client(redis_url: str) -> Iterator[Redis]:
    with Redis.from_url(redis_url) as client:
        yield client


def stream_events(client: Redis, stream: str = "botperf:metrics") -> list[dict[str, Any]]:
    return [json.loads(fields[b"json"]) for _, fields in client.xrange(stream)]


def batches(client: Redis) -> int:
    """Transactions Redis ran since the test began: one per batch."""
    stats = client.info("commandstats").get("cmdstat_exec", {"calls": 0})
    return int(stats["calls"])


def test_is_a_metrics_sink(redis_url: str) -> None:
    assert isinstance(RedisStreamSink(redis_url), MetricsSink)


def test_each_event_becomes_one_entry_in_order(client: Redis, redis_url: str) -> None:
    with BatchMetricsWriter(RedisStreamSink(redis_url), max_batch=10) as metrics:
        for number in range(25):
            metrics.record("tick", number=number, text="line\nbreak")
    events = stream_events(client)
    assert [(e["event"], e["number"], e["text"]) for e in events] == [
        ("tick", number, "line\nbreak") for number in range(25)
    ]
    assert all(isinstance(e["ts"], float) for e in events)


def test_each_batch_is_one_transaction(client: Redis, redis_url: str) -> None:
    client.config_resetstat()
    with BatchMetricsWriter(RedisStreamSink(redis_url), max_batch=10) as metrics:
        for number in range(25):
            metrics.record("tick", number=number)
    assert batches(client) == 3
    assert client.xlen("botperf:metrics") == 25


def test_exact_trimming_keeps_the_newest_maxlen_entries(client: Redis, redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, stream="short", maxlen=5, approximate=False)
    with BatchMetricsWriter(sink, max_batch=4) as metrics:
        for number in range(12):
            metrics.record("tick", number=number)
    assert [e["number"] for e in stream_events(client, "short")] == list(range(7, 12))


def test_approximate_trimming_never_drops_below_maxlen(client: Redis, redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, stream="rough", maxlen=5)
    with BatchMetricsWriter(sink, max_batch=50) as metrics:
        for number in range(300):
            metrics.record("tick", number=number)
    assert 5 <= client.xlen("rough") <= 300
    assert stream_events(client, "rough")[-1]["number"] == 299


def test_unencodable_value_is_written_as_repr_and_counted(client: Redis, redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, encoder="json")
    with BatchMetricsWriter(sink) as metrics:
        metrics.record("odd", value=complex(1, 2))
    assert stream_events(client)[0]["value"] == "(1+2j)"
    assert sink.repr_values == 1


@pytest.mark.anyio
async def test_async_writer_on_either_backend_appends_to_the_stream(
    client: Redis, redis_url: str
) -> None:
    # The sink runs in the writer's worker thread with a sync client: trio works too.
    async with BatchMetricsWriter(RedisStreamSink(redis_url), max_batch=2) as metrics:
        metrics.record("llm_call", latency_ms=812.5)
        await metrics.flush()
        await anyio.to_thread.run_sync(client.ping)
    assert [e["latency_ms"] for e in stream_events(client)] == [812.5]


def test_unreachable_redis_raises_unavailable_and_adds_nothing() -> None:
    port = free_port()
    sink = RedisStreamSink(f"redis://127.0.0.1:{port}/0", timeout=5.0)
    with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}/0") as info:
        sink.write_batch([{"ts": 1.0, "event": "tick"}])
    assert info.value.operation == "RedisStreamSink.write_batch"
    sink.close()


def test_writer_keeps_what_an_unreachable_redis_refused(tmp_path: Path) -> None:
    sink = RedisStreamSink(f"redis://127.0.0.1:{free_port()}/0")
    saved = tmp_path / "unwritten.jsonl"
    with (
        pytest.raises(MetricsNotWrittenError),
        BatchMetricsWriter(sink, unwritten_path=saved, retry_delay=0.01) as metrics,
    ):
        metrics.record("tick", number=1)
    assert [json.loads(line)["number"] for line in saved.read_text().splitlines()] == [1]


def test_key_of_another_type_raises_command_error_and_adds_nothing(
    client: Redis, redis_url: str
) -> None:
    client.set("taken", "a string")
    sink = RedisStreamSink(redis_url, stream="taken")
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        sink.write_batch([{"ts": 1.0, "event": "a"}, {"ts": 2.0, "event": "b"}])
    assert client.get("taken") == b"a string"


def test_given_client_stays_open_after_close(client: Redis) -> None:
    sink = RedisStreamSink(client)
    sink.write_batch([{"ts": 1.0, "event": "tick"}])
    sink.close()
    assert client.xlen("botperf:metrics") == 1


def test_client_built_from_a_url_is_closed(client: Redis, redis_url: str) -> None:
    sink = RedisStreamSink(redis_url)
    sink.write_batch([{"ts": 1.0, "event": "tick"}])
    connected = len(client.client_list())
    sink.close()
    assert len(client.client_list()) == connected - 1


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"stream": ""}, InvalidOptionError, "stream must be a non-empty str"),
        ({"maxlen": 0}, InvalidOptionError, "maxlen must be an int of at least 1, or None"),
        ({"maxlen": 2.5}, InvalidOptionError, "maxlen must be an int"),
        ({"timeout": 0}, InvalidOptionError, "timeout must be a finite number of seconds, above 0"),
        ({"timeout": "1"}, InvalidOptionError, "timeout must be a finite number of seconds"),
        ({"encoder": "yaml"}, InvalidOptionError, "encoder must be"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RedisStreamSink("redis://127.0.0.1:1/0", **options)


def test_something_other_than_a_client_or_url_is_refused() -> None:
    with pytest.raises(TypeError, match=r"redis must be a redis\.Redis client"):
        RedisStreamSink(6379)  # type: ignore[arg-type]


def test_repr_shows_address_stream_and_maxlen() -> None:
    sink = RedisStreamSink("redis://127.0.0.1:6400/1", stream="m", maxlen=10)
    assert repr(sink) == "RedisStreamSink(127.0.0.1:6400/1, stream='m', maxlen=10)"
    assert sink.stream == "m"
