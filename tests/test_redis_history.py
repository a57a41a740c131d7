from __future__ import annotations

import itertools
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from history_contract import HistoryContract, StoreFactory
from redis.asyncio import Redis
from redis_server import free_port

from botperf import HistoryStats, InvalidOptionError, Message
from botperf.redis import RedisHistoryStore, RedisUnavailableError
from botperf.redis._errors import RedisAsyncioRequiredError, RedisCommandError


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only; trio gets a clear error (tested below).
    return "asyncio"


class BlockingStore:
    """A RedisHistoryStore driven from synchronous code, as HistoryContract drives a store.

    Each call runs the store's coroutine in the portal's event loop thread; the
    dunders and the property HistoryStore has map to the store's coroutines.
    """

    def __init__(self, portal: BlockingPortal, store: RedisHistoryStore) -> None:
        self._portal = portal
        self._store = store

    def append(self, channel: Any, role: Any, content: Any, *, author: Any = None) -> None:
        self._portal.call(partial(self._store.append, channel, role, content, author=author))

    def get(self, channel: Any) -> tuple[Message, ...]:
        return self._portal.call(self._store.get, channel)

    def as_messages(self, channel: Any) -> list[dict[str, str]]:
        return self._portal.call(self._store.as_messages, channel)

    def clear(self, channel: Any) -> None:
        self._portal.call(self._store.clear, channel)

    def set_summary(self, channel: Any, summary: Any) -> bool:
        return self._portal.call(self._store.set_summary, channel, summary)

    def get_summary(self, channel: Any) -> str | None:
        return self._portal.call(self._store.get_summary, channel)

    def channels(self) -> list[int | str]:
        return self._portal.call(self._store.channels)

    @property
    def stats(self) -> HistoryStats:
        return self._portal.call(self._store.stats)

    def __len__(self) -> int:
        return self._portal.call(self._store.size)

    def __contains__(self, channel: object) -> bool:
        return self._portal.call(self._store.contains, channel)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.fixture
def blocking_client(portal: BlockingPortal, redis_url: str) -> Iterator[Redis]:
    client = portal.call(Redis.from_url, redis_url)
    yield client
    portal.call(client.aclose)


# The same contract as the in-memory store's. DumpLoadContract does not apply: Redis
# persists the data itself (RDB, AOF), so RedisHistoryStore has no dump() or load().
class TestRedisStoreContract(HistoryContract):
    model_examples = 40  # each step is a few round trips

    @pytest.fixture
    def make_store(self, portal: BlockingPortal, blocking_client: Redis) -> StoreFactory:
        # A fresh prefix per store: a test that builds two stores expects two empty ones.
        prefixes = (f"contract:{number}:" for number in itertools.count())

        def make_store(**options: Any) -> BlockingStore:
            store = portal.call(
                partial(RedisHistoryStore, blocking_client, prefix=next(prefixes), **options)
            )
            return BlockingStore(portal, store)

        return make_store


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_url) as client:
        yield client


def silent_server() -> socket.socket:
    """A listening socket that never accepts: connections open, no reply ever comes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


@pytest.mark.anyio
async def test_stores_on_one_prefix_share_history_and_recency(redis_url: str) -> None:
    async with RedisHistoryStore(redis_url) as first, RedisHistoryStore(redis_url) as second:
        await first.append(1, "user", "hi")
        await second.append(2, "user", "hello")
        await first.append(1, "assistant", "hi there")
        assert await second.get(1) == (Message("user", "hi"), Message("assistant", "hi there"))
        assert await second.channels() == [2, 1]
        assert (await first.stats()).hits == 1


@pytest.mark.anyio
async def test_stores_on_other_prefixes_are_apart(client: Redis) -> None:
    bot_a = RedisHistoryStore(client, prefix="a:")
    bot_b = RedisHistoryStore(client, prefix="b:")
    await bot_a.append(1, "user", "hi")
    assert await bot_b.get(1) == ()
    assert await bot_b.size() == 0


@pytest.mark.anyio
async def test_concurrent_appends_from_many_clients_keep_every_limit(redis_url: str) -> None:
    evicted: list[tuple[int | str, tuple[Message, ...]]] = []

    def record(channel: int | str, messages: tuple[Message, ...]) -> None:
        evicted.append((channel, messages))

    # 200 appends at once: a generous timeout, so that a loaded machine cannot fail them.
    stores = [
        RedisHistoryStore(redis_url, timeout=60, max_channels=5, max_messages=3, on_evict=record)
        for _ in range(4)
    ]
    async with anyio.create_task_group() as tg:
        for number, store in enumerate(stores):
            for index in range(50):
                tg.start_soon(store.append, index % 10, "user", f"{number}-{index}")
    store = stores[0]
    stats = await store.stats()
    held = [await store.get(channel) for channel in await store.channels()]
    assert stats.channels == len(held) == 5
    assert all(1 <= len(messages) <= 3 for messages in held)
    assert stats.messages == sum(map(len, held))
    assert stats.evictions == len(evicted)
    assert sum(len(messages) for _, messages in evicted) + stats.messages <= 200
    for store in stores:
        await store.aclose()


@pytest.mark.anyio
async def test_on_evict_may_be_a_coroutine_function(client: Redis) -> None:
    archived: list[tuple[int | str, tuple[Message, ...]]] = []

    async def archive(channel: int | str, messages: tuple[Message, ...]) -> None:
        await anyio.lowlevel.checkpoint()
        archived.append((channel, messages))

    store = RedisHistoryStore(client, max_channels=1, on_evict=archive)
    await store.append("old", "user", "a")
    await store.append("new", "user", "b")
    assert archived == [("old", (Message("user", "a"),))]


@pytest.mark.anyio
async def test_failing_coroutine_on_evict_is_logged_and_counted(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(channel: int | str, messages: tuple[Message, ...]) -> None:
        raise RuntimeError("boom")

    store = RedisHistoryStore(client, max_channels=1, on_evict=explode)
    await store.append(1, "user", "a")
    with caplog.at_level(logging.ERROR, logger="botperf.redis._history"):
        await store.append(2, "user", "b")
    [record] = caplog.records
    assert record.exc_info is not None
    assert (await store.stats()).evict_errors == 1
    assert await store.channels() == [2]


@pytest.mark.anyio
async def test_any_text_survives_the_round_trip(client: Redis) -> None:
    text = 'emoji \U0001f600, quote ", newline \n, lone surrogate \ud800, nul \x00'
    store = RedisHistoryStore(client)
    await store.append("\u00e9t\u00e9 \ud800", "user", text, author="\u00e9")
    assert await store.channels() == ["\u00e9t\u00e9 \ud800"]
    assert await store.get("\u00e9t\u00e9 \ud800") == (Message("user", text, "\u00e9"),)


@pytest.mark.anyio
async def test_a_client_decoding_responses_works_alike(redis_url: str) -> None:
    async with Redis.from_url(redis_url, decode_responses=True) as client:
        store = RedisHistoryStore(client, max_channels=1, on_evict=lambda c, m: None)
        await store.append(1, "user", "caf\u00e9")
        await store.append("1", "user", "hi")
        assert await store.channels() == ["1"]
        assert await store.get("1") == (Message("user", "hi"),)
        assert (await store.stats()).evictions == 1


@pytest.mark.anyio
async def test_messages_appended_without_a_budget_are_counted_when_read(client: Redis) -> None:
    await RedisHistoryStore(client).append(1, "user", "one two three")
    await RedisHistoryStore(client).append(1, "user", "four")
    budgeted = RedisHistoryStore(client, max_tokens=2, count_tokens=lambda t: len(t.split()))
    assert await budgeted.as_messages(1) == [{"role": "user", "content": "four"}]


@pytest.mark.anyio
async def test_hashable_channel_other_than_str_or_int_is_refused(client: Redis) -> None:
    store = RedisHistoryStore(client)
    with pytest.raises(TypeError, match="channel must be a str or int to be kept in Redis"):
        await store.append((1, 2), "user", "hi")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="channel must be a str or int"):
        await store.get(True)
    assert not await store.contains((1, 2))


@pytest.mark.anyio
async def test_int_channel_too_long_for_str_is_refused_clearly(client: Redis) -> None:
    if not hasattr(sys, "set_int_max_str_digits"):
        pytest.skip("this Python has no limit on int to str conversion")
    huge = 10**5000
    store = RedisHistoryStore(client)
    with pytest.raises(ValueError, match="an int short enough for str") as info:
        await store.append(huge, "user", "hi")
    assert info.value.value == huge  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="use a shorter id or a str key"):
        await store.get(huge)
    assert await store.size() == 0
    await store.append(str(10**20), "user", "a long id as a str is fine")
    assert await store.size() == 1


@pytest.mark.anyio
async def test_unreachable_redis_raises_unavailable(client: Redis) -> None:
    port = free_port()
    store = RedisHistoryStore(f"redis://127.0.0.1:{port}/0", timeout=5.0)
    with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}/0") as info:
        await store.append(1, "user", "hi")
    assert isinstance(info.value, ConnectionError)
    assert info.value.operation == "RedisHistoryStore.append"
    await store.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["append", "get", "stats"])
async def test_silent_redis_raises_unavailable_after_the_timeout(method: str) -> None:
    with silent_server() as listener:
        port = listener.getsockname()[1]
        async with RedisHistoryStore(f"redis://127.0.0.1:{port}/0", timeout=0.2) as store:
            call: Callable[[], Any] = {
                "append": partial(store.append, 1, "user", "hi"),
                "get": partial(store.get, 1),
                "stats": store.stats,
            }[method]
            # The store's deadline and the client's socket timeout (both 0.2 s) race: on
            # Python 3.10, redis-py's async_timeout turns the store's cancellation into its
            # own TimeoutError when both expire in one loop iteration (a busy machine).
            with pytest.raises(
                RedisUnavailableError,
                match=rf"no answer within 0\.2 s|Timeout reading from 127\.0\.0\.1:{port}",
            ):
                await call()


@pytest.mark.anyio
async def test_a_client_without_timeouts_is_bounded_by_the_store_timeout() -> None:
    with silent_server() as listener:
        port = listener.getsockname()[1]
        async with Redis(port=port, socket_timeout=None, socket_connect_timeout=None) as client:
            store = RedisHistoryStore(client, timeout=0.2)
            with pytest.raises(RedisUnavailableError, match=r"no answer within 0\.2 s"):
                await store.size()


@pytest.mark.anyio
async def test_foreign_key_under_the_prefix_raises_command_error(client: Redis) -> None:
    await client.set("botperf:history:recency", "not a sorted set")
    store = RedisHistoryStore(client)
    with pytest.raises(RedisCommandError, match="WRONGTYPE") as info:
        await store.append(1, "user", "hi")
    assert info.value.operation == "RedisHistoryStore.append"


@pytest.mark.anyio
@pytest.mark.parametrize("stored", [b"not json", b"[1, 2]", b"42"])
async def test_foreign_message_raises_command_error(client: Redis, stored: bytes) -> None:
    store = RedisHistoryStore(client)
    await store.append(1, "user", "hi")
    await client.rpush("botperf:history:h:1", stored)
    with pytest.raises(RedisCommandError, match="a history holds messages not written by botperf"):
        await store.get(1)


@pytest.mark.anyio
@pytest.mark.parametrize("member", ["[1]", "not json"])
async def test_foreign_channel_raises_command_error(client: Redis, member: str) -> None:
    await client.zadd("botperf:history:recency", {member: 1})
    with pytest.raises(RedisCommandError, match=r"the channel .* was not written by botperf"):
        await RedisHistoryStore(client).channels()


def test_awaiting_on_trio_raises_asyncio_required(redis_url: str) -> None:
    store: RedisHistoryStore[int] = RedisHistoryStore(redis_url)
    with pytest.raises(RedisAsyncioRequiredError, match=r"RedisHistoryStore\.get needs"):
        anyio.run(store.get, 1, backend="trio")


@pytest.mark.anyio
async def test_store_built_from_a_url_closes_its_client(client: Redis, redis_url: str) -> None:
    before = len(await client.client_list())
    async with RedisHistoryStore(redis_url) as store:
        await store.append(1, "user", "hi")
        assert len(await client.client_list()) == before + 1
    # The client closed its socket; Redis drops the connection from its list once its
    # event loop reads the close, a moment later (a safety net, not a timing).
    with anyio.fail_after(10):
        while len(await client.client_list()) > before:  # noqa: ASYNC110 (nothing to wait on)
            await anyio.sleep(0.01)
    assert len(await client.client_list()) == before


@pytest.mark.anyio
async def test_store_given_a_client_leaves_it_open(client: Redis) -> None:
    async with RedisHistoryStore(client) as store:
        await store.append(1, "user", "hi")
    assert await client.ping()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"prefix": ""}, InvalidOptionError, "prefix must be a non-empty str"),
        ({"prefix": b"p:"}, InvalidOptionError, "prefix must be a non-empty str"),
        ({"timeout": 0}, InvalidOptionError, "timeout must be a finite number of seconds, above 0"),
        ({"timeout": float("inf")}, InvalidOptionError, "timeout must be a finite number"),
        ({"timeout": "1"}, InvalidOptionError, "timeout must be a finite number of seconds"),
        ({"timeout": True}, InvalidOptionError, "timeout must be a finite number of seconds"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RedisHistoryStore("redis://127.0.0.1:1/0", **options)


def test_something_other_than_a_client_or_url_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match=r"redis must be a redis\.asyncio\.Redis client"):
        RedisHistoryStore(6379)  # type: ignore[arg-type]


def test_repr_shows_address_prefix_and_limits() -> None:
    store: RedisHistoryStore[int] = RedisHistoryStore(
        "redis://127.0.0.1:6400/2", prefix="bot:", max_channels=10, max_messages=5
    )
    assert repr(store) == (
        "RedisHistoryStore(127.0.0.1:6400/2, prefix='bot:', max_channels=10, "
        "max_messages=5, max_tokens=None)"
    )


def test_unix_socket_address_is_shown_as_such() -> None:
    store: RedisHistoryStore[int] = RedisHistoryStore("unix:///run/redis.sock")
    assert repr(store).startswith("RedisHistoryStore(unix:/run/redis.sock, ")


def words(text: str) -> int:
    return len(text.split())


class TrimLog:
    """An on_trim callback recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int | str, tuple[Message, ...]]] = []

    def __call__(self, channel: int | str, messages: tuple[Message, ...]) -> None:
        self.calls.append((channel, messages))

    def contents(self) -> list[str]:
        return [message.content for _, batch in self.calls for message in batch]


@pytest.mark.anyio
@pytest.mark.parametrize("trim", ["sliding", "stable"])
async def test_concurrent_prompts_hand_each_message_to_on_trim_once(
    redis_url: str, trim: str
) -> None:
    log = TrimLog()
    options: dict[str, Any] = {
        "timeout": 60,
        "trim": trim,
        "max_tokens": 12,
        "max_messages": 500,
        "count_tokens": words,
        "on_trim": log,
    }
    stores = [RedisHistoryStore(redis_url, prefix=f"once:{trim}:", **options) for _ in range(4)]

    async def talk(number: int, store: RedisHistoryStore[int]) -> None:
        for index in range(25):
            await store.append(1, "user", f"s{number}-{index} x")
            await store.as_messages(1)

    async with anyio.create_task_group() as tg:
        for number, store in enumerate(stores):
            tg.start_soon(talk, number, store)
    window = [m["content"] for m in await stores[0].as_messages(1)]
    history = [m.content for m in await stores[0].get(1)]
    trimmed = log.contents()
    assert len(set(trimmed)) == len(trimmed)  # none twice
    # Each batch is a run of the history, and together they are all before the window.
    position = {content: index for index, content in enumerate(history)}
    for _, batch in log.calls:
        places = [position[m.content] for m in batch]
        assert places == list(range(places[0], places[0] + len(places)))
    assert sorted(trimmed, key=position.__getitem__) + window == history
    assert (await stores[0].stats()).trim_errors == 0
    for store in stores:
        await store.aclose()


@pytest.mark.anyio
async def test_a_window_moved_meanwhile_by_another_process_is_read_again(client: Redis) -> None:
    first_log, second_log = TrimLog(), TrimLog()
    options: dict[str, Any] = {"prefix": "cas:", "max_tokens": 2, "count_tokens": words}
    first = RedisHistoryStore(client, on_trim=first_log, **options)
    second = RedisHistoryStore(client, on_trim=second_log, **options)
    await first.append(1, "user", "a b")
    await first.append(1, "user", "c d")
    real_trim = first._trim
    moves = 0

    async def second_moves_first(**kwargs: Any) -> Any:
        # Between the first store's read and its move, the second store moves the window.
        nonlocal moves
        moves += 1
        if moves == 1:
            await second.as_messages(1)
        return await real_trim(**kwargs)

    first._trim = second_moves_first  # type: ignore[assignment]
    assert await first.as_messages(1) == [{"role": "user", "content": "c d"}]
    assert second_log.contents() == ["a b"]
    assert first_log.calls == []
    assert moves == 1  # read again, the window had nothing more to move
    assert (await first.stats()).hits == 2  # one per call, the second read not counted


@pytest.mark.anyio
async def test_on_trim_may_be_a_coroutine_function(client: Redis) -> None:
    trimmed: list[tuple[int | str, tuple[Message, ...]]] = []

    async def summarize(channel: int | str, messages: tuple[Message, ...]) -> None:
        await anyio.lowlevel.checkpoint()
        trimmed.append((channel, messages))

    store = RedisHistoryStore(client, max_messages=1, on_trim=summarize)
    await store.append("c", "user", "a")
    await store.append("c", "user", "b")  # "a" drops off the window
    assert trimmed == [("c", (Message("user", "a"),))]


@pytest.mark.anyio
async def test_failing_coroutine_on_trim_is_logged_and_counted(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(channel: int | str, messages: tuple[Message, ...]) -> None:
        raise RuntimeError("boom")

    store = RedisHistoryStore(client, max_tokens=1, count_tokens=words, on_trim=explode)
    await store.append(1, "user", "a")
    await store.append(1, "user", "b")
    with caplog.at_level(logging.ERROR, logger="botperf.redis._history"):
        assert await store.as_messages(1) == [{"role": "user", "content": "b"}]
    [record] = caplog.records
    assert "on_trim" in record.getMessage()
    assert (await store.stats()).trim_errors == 1


@pytest.mark.anyio
async def test_summary_set_without_a_budget_is_counted_when_read(client: Redis) -> None:
    plain = RedisHistoryStore(client)
    await plain.append(1, "user", "one")
    await plain.append(1, "user", "two")
    assert await plain.set_summary(1, "a b")
    budgeted = RedisHistoryStore(client, max_tokens=3, count_tokens=words)
    assert await budgeted.as_messages(1) == [
        {"role": "system", "content": "a b"},
        {"role": "user", "content": "two"},
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("field", "stored", "message"),
    [
        ("summary", "not json", "a summary was not written by botperf"),
        ("summary", "[1, 2]", "a summary was not written by botperf"),
        ("start", "soon", "a window state field .* was not written by botperf"),
    ],
)
async def test_foreign_window_state_raises_command_error(
    client: Redis, field: str, stored: str, message: str
) -> None:
    store = RedisHistoryStore(client, trim="stable")
    await store.append(1, "user", "hi")
    await client.hset("botperf:history:w:1", field, stored)
    with pytest.raises(RedisCommandError, match=message):
        await store.as_messages(1)


@pytest.mark.anyio
async def test_clear_and_eviction_delete_the_window_keys(client: Redis) -> None:
    store = RedisHistoryStore(client, max_channels=1, trim="stable", max_tokens=5)
    await store.append(1, "user", "hi")
    await store.set_summary(1, "earlier")
    await store.as_messages(1)
    assert await client.exists("botperf:history:w:1")
    await store.append(2, "user", "hi")  # evicts 1
    await store.set_summary(2, "earlier")
    await store.clear(2)
    assert await client.keys("botperf:history:w:*") == []
