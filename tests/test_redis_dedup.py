from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from concurrency import eventually
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis_server import free_port

from botperf import InvalidOptionError
from botperf.redis import Codec, JsonCodec, RedisDeduplicator, RedisDedupStats, RedisRemoteError
from botperf.redis._errors import RedisAsyncioRequiredError, RedisCommandError, RedisKeyError

WORKER = Path(__file__).with_name("redis_dedup_worker.py")
KEY = "what is the capital of France?"


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only; trio gets a clear error (tested below).
    return "asyncio"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_url) as client:
        yield client


def channel(key: object) -> str:
    return f"botperf:dedup:done:{json.dumps(key)}"


async def leading(client: Redis, key: object) -> None:
    """Wait until a flight holds the lock for ``key``: it leads, and the next call follows.

    ``anyio.wait_all_tasks_blocked()`` is not enough: the first call is blocked as soon as it
    waits for Redis, before it has the lock, and a call started then may take the lock
    first when the event loop sees both replies at once (a busy machine).
    """
    with anyio.fail_after(10):
        # Polling: the state is in Redis, there is no event to wait on.
        while not await client.exists(f"botperf:dedup:lock:{json.dumps(key)}"):  # noqa: ASYNC110
            await anyio.sleep(0.005)


async def followers(client: Redis, key: object, count: int) -> None:
    """Wait until ``count`` flights follow the execution for ``key`` (subscribed)."""
    with anyio.fail_after(10):
        # Polling: the state is in Redis, there is no event to wait on.
        while (await client.pubsub_numsub(channel(key)))[0][1] < count:  # noqa: ASYNC110
            await anyio.sleep(0.005)


class Counter:
    """An async function counting its executions, returning when released."""

    def __init__(self, result: object = "Paris") -> None:
        self.result = result
        self.executions = 0
        self.release = anyio.Event()

    async def __call__(self) -> object:
        self.executions += 1
        await self.release.wait()
        return self.result


@pytest.mark.anyio
async def test_concurrent_calls_in_one_process_run_once(client: Redis) -> None:
    dedup = RedisDeduplicator(client)
    ask = Counter(result=["Paris"])
    results: list[object] = []

    async def call() -> None:
        results.append(await dedup.run(KEY, ask))

    async with anyio.create_task_group() as task_group:
        for _ in range(10):
            task_group.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        ask.release.set()
    assert ask.executions == 1
    assert all(result is results[0] for result in results)
    assert dedup.stats == RedisDedupStats(
        calls=10, shared=9, executions=1, remote=0, cache_hits=0, errors=0, takeovers=0, fallbacks=0
    )


@pytest.mark.anyio
async def test_a_second_process_shares_the_execution(client: Redis, redis_url: str) -> None:
    async with RedisDeduplicator(redis_url) as here, RedisDeduplicator(redis_url) as there:
        ask = Counter(result={"answer": 42})
        results: dict[str, object] = {}

        async def call(name: str, dedup: RedisDeduplicator) -> None:
            results[name] = await dedup.run(KEY, ask)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(call, "here", here)
            await leading(client, KEY)
            task_group.start_soon(call, "there", there)
            await followers(client, KEY, 1)
            ask.release.set()
        assert ask.executions == 1
        assert results == {"here": {"answer": 42}, "there": {"answer": 42}}
        assert (here.stats.executions, there.stats.remote) == (1, 1)


@pytest.mark.anyio
async def test_an_error_reaches_local_callers_as_itself_and_others_as_remote_error(
    client: Redis,
) -> None:
    here, there = RedisDeduplicator(client), RedisDeduplicator(client)
    error = ValueError("model not found")
    caught: dict[str, BaseException] = {}

    async def fail() -> None:
        await followers(client, KEY, 1)
        raise error

    async def call(name: str, dedup: RedisDeduplicator) -> None:
        try:
            await dedup.run(KEY, fail)
        except Exception as exc:
            caught[name] = exc

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(call, "here", here)
        await leading(client, KEY)
        task_group.start_soon(call, "there", there)
    assert caught["here"] is error
    remote = caught["there"]
    assert isinstance(remote, RedisRemoteError)
    assert (remote.error_type, remote.error_message) == ("ValueError", "model not found")
    assert "raised in another process: ValueError: model not found" in str(remote)
    assert (here.stats.errors, there.stats.errors) == (1, 1)


@pytest.mark.anyio
async def test_after_an_error_the_next_call_runs_again(client: Redis) -> None:
    dedup = RedisDeduplicator(client)
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    with pytest.raises(RuntimeError, match="first try fails"):
        await dedup.run(KEY, flaky)
    assert await dedup.run(KEY, flaky) == "ok"
    assert len(attempts) == 2


@pytest.mark.anyio
async def test_without_ttl_a_later_call_runs_again(client: Redis) -> None:
    dedup = RedisDeduplicator(client)
    ask = Counter()
    ask.release.set()
    await dedup.run(KEY, ask)
    await RedisDeduplicator(client).run(KEY, ask)
    assert ask.executions == 2


@pytest.mark.anyio
async def test_ttl_serves_the_result_to_other_processes_from_redis(client: Redis) -> None:
    ask = Counter(result=[1, "two"])
    ask.release.set()
    assert await RedisDeduplicator(client, ttl=60).run(KEY, ask) == [1, "two"]
    later = RedisDeduplicator(client, ttl=60)
    assert await later.run(KEY, ask) == [1, "two"]
    assert ask.executions == 1
    assert later.stats.cache_hits == 1


@pytest.mark.anyio
async def test_errors_are_never_cached(client: Redis) -> None:
    dedup = RedisDeduplicator(client, ttl=60)
    calls: list[int] = []

    async def fail() -> None:
        calls.append(1)
        raise ValueError("no")

    for _ in range(2):
        with pytest.raises(ValueError, match="no"):
            await dedup.run(KEY, fail)
    assert len(calls) == 2


@pytest.mark.anyio
async def test_forget_drops_the_cached_result(client: Redis) -> None:
    dedup = RedisDeduplicator(client, ttl=60)
    ask = Counter()
    ask.release.set()
    await dedup.run(KEY, ask)
    await dedup.forget(KEY)
    await dedup.run(KEY, ask)
    assert ask.executions == 2


@pytest.mark.anyio
async def test_equal_dict_keys_are_one_key_whatever_their_order(client: Redis) -> None:
    dedup = RedisDeduplicator(client, ttl=60)
    ask = Counter()
    ask.release.set()
    await dedup.run({"model": "llama", "prompt": "hi"}, ask)
    await dedup.run({"prompt": "hi", "model": "llama"}, ask)
    assert ask.executions == 1


@pytest.mark.anyio
@pytest.mark.parametrize("key", [object(), float("nan"), {1: "a", "b": 2}, {1: "a"}])
async def test_key_json_cannot_hold_is_refused(client: Redis, key: object) -> None:
    with pytest.raises(RedisKeyError, match="cannot be written as JSON") as info:
        await RedisDeduplicator(client).run(key, Counter())
    assert isinstance(info.value, TypeError)


@pytest.mark.anyio
async def test_a_key_holding_itself_is_refused(client: Redis) -> None:
    key: list[object] = ["a"]
    key.append(key)
    with pytest.raises(RedisKeyError, match="cannot be written as JSON"):
        await RedisDeduplicator(client).run(key, Counter())


@pytest.mark.anyio
async def test_leader_that_vanished_is_taken_over_once_its_lock_expires(client: Redis) -> None:
    # A leader that died: its lock, with no outcome, expiring in 200 ms.
    await client.set(f"botperf:dedup:lock:{json.dumps(KEY)}", "dead", px=200)
    dedup = RedisDeduplicator(client, lock_ttl=0.3)
    ask = Counter()
    ask.release.set()
    with anyio.fail_after(10):
        assert await dedup.run(KEY, ask) == "Paris"
    assert (dedup.stats.takeovers, ask.executions) == (1, 1)


@pytest.mark.anyio
async def test_abandoned_leader_frees_its_lock_for_a_follower_at_once(client: Redis) -> None:
    # lock_ttl of a minute: the follower can only finish this soon if the lock was freed.
    leader = RedisDeduplicator(client, lock_ttl=60)
    follower = RedisDeduplicator(client, lock_ttl=60)
    hang, quick = Counter(), Counter(result="from the follower")
    quick.release.set()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(leader.run, KEY, hang)
            await leading(client, KEY)
            with anyio.CancelScope() as follower_scope:
                task_group.start_soon(follower.run, KEY, quick)
                await followers(client, KEY, 1)
            task_group.cancel_scope.cancel()  # the leader's only caller leaves
        assert await follower.run(KEY, quick) == "from the follower"
    assert follower_scope.cancel_called is False
    assert quick.executions == 1


@pytest.mark.anyio
async def test_lock_is_renewed_while_a_long_call_runs(client: Redis) -> None:
    # Renewals come every lock_ttl / 3; a lock_ttl of 1 s lets one be late by over half a
    # second, as on a stalled machine, before the lock lapses.
    here = RedisDeduplicator(client, lock_ttl=1.0)
    there = RedisDeduplicator(client, lock_ttl=1.0)
    executions: list[str] = []

    async def slow() -> str:
        executions.append("slow")
        await followers(client, KEY, 1)
        await anyio.sleep(2.0)  # two lock_ttls: only renewals keep the lock
        return "done"

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(here.run, KEY, slow)
        await leading(client, KEY)
        assert await there.run(KEY, slow) == "done"
    assert executions == ["slow"]


@pytest.mark.anyio
async def test_outcome_stored_before_the_follower_subscribed_is_found(client: Redis) -> None:
    # The leader "held" took the lock and finished between our acquire and subscribe.
    name = json.dumps(KEY)
    await client.set(f"botperf:dedup:lock:{name}", "held", px=60_000)
    await client.set(f"botperf:dedup:{name}:outcome:held", b'o"Paris"', px=60_000)
    dedup = RedisDeduplicator(client)
    assert await dedup.run(KEY, Counter()) == "Paris"
    assert dedup.stats.remote == 1


@pytest.mark.anyio
async def test_leader_that_loses_its_lock_logs_it_and_still_answers(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    lock = f"botperf:dedup:lock:{json.dumps(KEY)}"

    async def slow() -> str:
        await client.delete(lock)
        await eventually(lambda: "lost the lock" in caplog.text)  # at the next renewal
        return "Paris"

    with caplog.at_level(logging.WARNING, logger="botperf.redis._dedup"):
        assert await RedisDeduplicator(client, lock_ttl=0.3).run(KEY, slow) == "Paris"
    assert "lost the lock" in caplog.text


@pytest.mark.anyio
async def test_redis_failing_after_the_call_ran_is_logged_and_the_result_returned(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    lock = f"botperf:dedup:lock:{json.dumps(KEY)}"

    async def sabotage() -> str:
        # The lock key turns into a list: renewing and publishing get WRONGTYPE.
        await client.delete(lock)
        await client.rpush(lock, "not a lock")
        await eventually(lambda: "could not renew the lock" in caplog.text)
        return "Paris"

    with caplog.at_level(logging.WARNING, logger="botperf.redis._dedup"):
        assert await RedisDeduplicator(client, lock_ttl=0.3).run(KEY, sabotage) == "Paris"
    assert "could not renew the lock" in caplog.text
    assert "could not hand the outcome for key" in caplog.text


@pytest.mark.anyio
async def test_a_result_the_codec_cannot_decode_raises_command_error(client: Redis) -> None:
    await client.set(f"botperf:dedup:cache:{json.dumps(KEY)}", b"not json")
    with pytest.raises(RedisCommandError, match="could not decode the result"):
        await RedisDeduplicator(client, ttl=60).run(KEY, Counter())


@pytest.mark.anyio
async def test_cancelled_caller_leaves_the_others_their_result(client: Redis) -> None:
    dedup = RedisDeduplicator(client)
    ask = Counter()
    results: list[object] = []

    impatient = anyio.CancelScope()

    async def call(scope: anyio.CancelScope) -> None:
        with scope:
            results.append(await dedup.run(KEY, ask))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(call, impatient)
        task_group.start_soon(call, anyio.CancelScope())
        await anyio.wait_all_tasks_blocked()
        impatient.cancel()
        await anyio.wait_all_tasks_blocked()
        ask.release.set()
    assert results == ["Paris"]
    assert ask.executions == 1


@pytest.mark.anyio
async def test_unreachable_redis_falls_back_to_a_local_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with RedisDeduplicator(f"redis://127.0.0.1:{free_port()}/0", timeout=5.0) as dedup:
        ask = Counter()
        results: list[object] = []

        async def call() -> None:
            results.append(await dedup.run(KEY, ask))

        with caplog.at_level(logging.WARNING, logger="botperf.redis._dedup"):
            async with anyio.create_task_group() as task_group:
                for _ in range(3):
                    task_group.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                ask.release.set()
    assert results == ["Paris"] * 3
    assert (ask.executions, dedup.stats.fallbacks, dedup.stats.executions) == (1, 1, 1)
    assert "Redis unavailable, running the call" in caplog.text


class PickleCodec:
    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value)

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)


@pytest.mark.anyio
async def test_a_custom_codec_carries_what_json_cannot(client: Redis) -> None:
    assert isinstance(PickleCodec(), Codec)
    ask = Counter(result=("Paris", frozenset({1})))
    ask.release.set()
    await RedisDeduplicator(client, ttl=60, codec=PickleCodec()).run(KEY, ask)
    cached = await RedisDeduplicator(client, ttl=60, codec=PickleCodec()).run(KEY, ask)
    assert cached == ("Paris", frozenset({1}))


@pytest.mark.anyio
async def test_a_result_the_codec_cannot_encode_reaches_others_as_remote_error(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    here, there = RedisDeduplicator(client), RedisDeduplicator(client)
    result = {1, 2}

    async def unencodable() -> set[int]:
        await followers(client, KEY, 1)
        return result

    outcomes: dict[str, object] = {}

    async def call(name: str, dedup: RedisDeduplicator) -> None:
        try:
            outcomes[name] = await dedup.run(KEY, unencodable)
        except RedisRemoteError as exc:
            outcomes[name] = exc

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(call, "here", here)
        await leading(client, KEY)
        task_group.start_soon(call, "there", there)
    assert outcomes["here"] is result
    remote = outcomes["there"]
    assert isinstance(remote, RedisRemoteError)
    assert remote.error_type == "CodecError"
    assert "could not encode" in caplog.text


def test_json_codec_round_trips_json_values() -> None:
    codec = JsonCodec()
    value = {"a": [1, 2.5, None, True, "é"]}
    assert codec.decode(codec.encode(value)) == value
    assert repr(codec) == "JsonCodec()"


def test_awaiting_on_trio_raises_asyncio_required(redis_url: str) -> None:
    dedup = RedisDeduplicator(redis_url)
    with pytest.raises(RedisAsyncioRequiredError, match=r"RedisDeduplicator\.run needs"):
        anyio.run(dedup.run, KEY, Counter(), backend="trio")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"prefix": ""}, InvalidOptionError, "prefix must be a non-empty str"),
        ({"ttl": 0}, InvalidOptionError, "ttl must be a finite number of seconds, above 0"),
        ({"lock_ttl": float("inf")}, InvalidOptionError, "lock_ttl must be a finite number"),
        ({"timeout": "1"}, InvalidOptionError, "timeout must be a finite number of seconds"),
        ({"codec": "json"}, InvalidOptionError, "codec must be None or an object with encode"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RedisDeduplicator("redis://127.0.0.1:1/0", **options)


def test_something_other_than_a_client_or_url_is_refused() -> None:
    with pytest.raises(TypeError, match=r"redis must be a redis\.asyncio\.Redis client"):
        RedisDeduplicator(6379)  # type: ignore[arg-type]


def test_a_client_decoding_responses_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisDeduplicator(Redis(decode_responses=True))


def test_repr_shows_address_prefix_and_flights() -> None:
    dedup = RedisDeduplicator("redis://127.0.0.1:6400/0", prefix="bot:")
    assert repr(dedup) == "<RedisDeduplicator 127.0.0.1:6400/0 prefix='bot:' in_flight=0>"


# Across real processes.


def start_worker(url: str, mode: str, calls: int, followers: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, mode, str(calls), str(followers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return dict(json.loads(out))


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` every 10 ms; fail after 30 s (a safety net, not a measure)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the worker processes never got there"
        time.sleep(0.01)


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[SyncRedis]:
    with SyncRedis.from_url(redis_url) as client:
        yield client


def test_four_processes_of_fifty_calls_run_once(redis_url: str, sync_client: SyncRedis) -> None:
    workers = [start_worker(redis_url, "answer", 50, 3) for _ in range(4)]
    outputs = [finish(worker) for worker in workers]
    assert [output["results"] for output in outputs] == [[{"answer": 42}] * 50] * 4
    assert sync_client.get("executions") == b"1"


def test_a_follower_takes_over_when_the_leader_process_is_killed(
    redis_url: str, sync_client: SyncRedis
) -> None:
    leader = start_worker(redis_url, "hang", 5, 0)
    try:
        wait_until(lambda: sync_client.get("started") is not None)
        taker = start_worker(redis_url, "quick", 5, 0)
        wait_until(lambda: sync_client.pubsub_numsub(channel(KEY))[0][1] == 1)
    finally:
        os.kill(leader.pid, signal.SIGKILL)
        leader.communicate()
    output = finish(taker)
    assert output == {"results": ["from the taker"] * 5, "takeovers": 1}
    assert sync_client.get("executions") == b"2"
