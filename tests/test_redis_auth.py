"""A wrong or missing password, or an ACL user without permissions, is a configuration error.

Every ``botperf.redis`` class says so ("check the password or ACL user") instead of
"check that redis-server runs", and ``RedisDeduplicator`` never falls back to a local run
on it: that is for lost connections and timeouts only. Against a real redis-server
started with ``requirepass`` and an ACL user.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis_server import RedisServer

from botperf.redis import RedisDeduplicator, RedisHistoryStore, RedisStreamSink, deduplicate
from botperf.redis._errors import RedisCommandError

PASSWORD = "correct horse"
ADVICE = "check the password or ACL user"


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only.
    return "asyncio"


@pytest.fixture(scope="module")
def locked_server(redis_server: RedisServer) -> Iterator[RedisServer]:
    """A redis-server requiring ``PASSWORD``, with ACL users of few permissions.

    ``reader`` may read keys but run no script, transaction or write; ``quiet`` may do
    everything except use pub/sub channels. (Depends on ``redis_server`` only to be
    skipped, or failed, as it is when redis-server is missing.)
    """
    with RedisServer(redis_server.executable, password=PASSWORD) as server:
        for user, *rules in (
            ("reader", "+@read", "+@connection"),
            ("quiet", "+@all", "resetchannels"),
        ):
            reply = server.command("ACL", "SETUSER", user, "on", ">pw", "~*", *rules)
            assert reply == b"+OK", reply
        yield server


@pytest.fixture
def locked(locked_server: RedisServer) -> RedisServer:
    locked_server.flush()
    return locked_server


def refused_urls(server: RedisServer) -> dict[str, str]:
    return {
        "missing password": server.url,
        "wrong password": server.url_for("wrong"),
        "unknown user": server.url_for("wrong", user="nobody"),
        "NOPERM": server.url_for("pw", user="reader"),
    }


REFUSALS = ["missing password", "wrong password", "unknown user", "NOPERM"]


class Counter:
    """An async function counting its executions."""

    def __init__(self) -> None:
        self.executions = 0

    async def __call__(self) -> str:
        self.executions += 1
        return "Paris"


def assert_configuration_error(error: BaseException, operation: str) -> None:
    """The error says what to fix, and is not the 'Redis is down' error callers retry."""
    assert ADVICE in str(error)
    assert operation in str(error)
    assert "redis-server runs" not in str(error)
    assert "raise the timeout" not in str(error)
    assert not isinstance(error, ConnectionError)


@pytest.mark.anyio
async def test_the_right_password_works(locked: RedisServer) -> None:
    # The control: the refusals below come from the credentials, not the setup.
    ask = Counter()
    async with RedisDeduplicator(locked.url_for(PASSWORD)) as dedup:
        assert await dedup.run("capital of France", ask) == "Paris"
    assert (ask.executions, dedup.stats.executions, dedup.stats.fallbacks) == (1, 1, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", REFUSALS)
async def test_deduplicator_refused_raises_and_never_runs_locally(
    locked: RedisServer, refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    ask = Counter()
    with caplog.at_level(logging.WARNING, logger="botperf.redis._dedup"):
        async with RedisDeduplicator(refused_urls(locked)[refusal]) as dedup:
            with pytest.raises(RedisCommandError) as info:
                await dedup.run("capital of France", ask)
    assert_configuration_error(info.value, "RedisDeduplicator.run")
    assert ask.executions == 0
    assert (dedup.stats.executions, dedup.stats.fallbacks) == (0, 0)
    assert "in this process only" not in caplog.text


@pytest.mark.anyio
async def test_deduplicator_with_a_given_client_of_a_wrong_password_never_runs_locally(
    locked: RedisServer,
) -> None:
    ask = Counter()
    async with Redis(host="127.0.0.1", port=locked.port, password="wrong") as client:
        dedup = RedisDeduplicator(client, ttl=60.0)
        with pytest.raises(RedisCommandError) as info:
            await dedup.run("capital of France", ask)
    assert_configuration_error(info.value, "RedisDeduplicator.run")
    assert (ask.executions, dedup.stats.fallbacks) == (0, 0)


@pytest.mark.anyio
async def test_follower_refused_its_channel_raises_and_never_runs_locally(
    locked: RedisServer,
) -> None:
    # Another process holds the key's lock: "quiet" follows it, and may not subscribe.
    key = "capital of France"
    locked.command("SET", f'botperf:dedup:lock:"{key}"', "other-process-token", "PX", "60000")
    ask = Counter()
    async with RedisDeduplicator(locked.url_for("pw", user="quiet")) as dedup:
        with pytest.raises(RedisCommandError) as info:
            await dedup.run(key, ask)
    assert_configuration_error(info.value, "RedisDeduplicator.run")
    assert (ask.executions, dedup.stats.fallbacks) == (0, 0)


@pytest.mark.anyio
async def test_leader_refused_its_channel_keeps_its_result_and_says_why(
    locked: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # "quiet" takes the lock and runs fn; its script may not PUBLISH the outcome (Redis
    # answers "The user executing the script can't publish ..."): logged, not raised.
    ask = Counter()
    with caplog.at_level(logging.WARNING, logger="botperf.redis._dedup"):
        async with RedisDeduplicator(locked.url_for("pw", user="quiet")) as dedup:
            assert await dedup.run("capital of France", ask) == "Paris"
    assert (ask.executions, dedup.stats.fallbacks) == (1, 0)
    assert "could not hand the outcome" in caplog.text
    assert ADVICE in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", REFUSALS)
async def test_decorated_function_refused_raises_and_never_runs_locally(
    locked: RedisServer, refusal: str
) -> None:
    executions = 0

    @deduplicate(refused_urls(locked)[refusal])
    async def ask(prompt: str) -> str:
        nonlocal executions
        executions += 1
        return prompt

    with pytest.raises(RedisCommandError) as info:
        await ask("capital of France")
    await ask.deduplicator.aclose()
    assert_configuration_error(info.value, "RedisDeduplicator.run")
    assert executions == 0
    assert ask.deduplicator.stats.fallbacks == 0


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", REFUSALS)
async def test_history_store_refused_raises_a_configuration_error(
    locked: RedisServer, refusal: str
) -> None:
    async with RedisHistoryStore[int](refused_urls(locked)[refusal]) as store:
        with pytest.raises(RedisCommandError) as info:
            await store.append(42, "user", "hello")
    assert_configuration_error(info.value, "RedisHistoryStore.append")
    assert locked.command("EXISTS", "botperf:history:h:42") == b":0"


@pytest.mark.parametrize("refusal", REFUSALS)
def test_stream_sink_refused_raises_a_configuration_error(
    locked: RedisServer, refusal: str
) -> None:
    sink = RedisStreamSink(refused_urls(locked)[refusal])
    with pytest.raises(RedisCommandError) as info:
        sink.write_batch([{"ts": 1.0, "event": "tick"}])
    sink.close()
    assert_configuration_error(info.value, "RedisStreamSink.write_batch")
    assert locked.command("XLEN", "botperf:metrics") == b":0"


def test_stream_sink_with_a_given_client_without_password_raises_a_configuration_error(
    locked: RedisServer,
) -> None:
    with SyncRedis(host="127.0.0.1", port=locked.port) as client:
        sink = RedisStreamSink(client)
        with pytest.raises(RedisCommandError) as info:
            sink.write_batch([{"ts": 1.0, "event": "tick"}])
    assert_configuration_error(info.value, "RedisStreamSink.write_batch")


@pytest.fixture
async def admin(locked: RedisServer) -> AsyncIterator[Redis]:
    async with Redis.from_url(locked.url_for(PASSWORD)) as client:
        yield client


@pytest.mark.anyio
async def test_history_store_right_password_works(admin: Redis) -> None:
    store = RedisHistoryStore[int](admin)
    await store.append(42, "user", "hello")
    assert await store.as_messages(42) == [{"role": "user", "content": "hello"}]
