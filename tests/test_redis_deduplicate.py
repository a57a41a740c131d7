"""``botperf.redis.deduplicate``: the decorator form of RedisDeduplicator, against a real Redis."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from botperf import InvalidOptionError
from botperf.redis import RedisDeduplicator, RedisDedupStats, deduplicate
from botperf.redis._errors import RedisAsyncioRequiredError, RedisKeyError

# Building a client does not connect: nothing listens on port 1, and nothing needs to.
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only; trio gets a clear error (tested below).
    return "asyncio"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_url) as client:
        yield client


class Model:
    """A fake LLM: counts its executions by prompt; answers once ``release`` is set."""

    def __init__(self) -> None:
        self.prompts: list[object] = []
        self.release = anyio.Event()

    async def answer(self, prompt: object, model: str = "llama3") -> list[str]:
        self.prompts.append(prompt)
        await self.release.wait()
        return [model, f"answer to {prompt}"]


def make_ask(model: Model, redis: Redis | str, **options: Any) -> Any:
    """Decorate one function, as each process of a bot would: same module, same name."""

    @deduplicate(redis, **options)
    async def ask(prompt: object, model_name: str = "llama3") -> list[str]:
        return await model.answer(prompt, model_name)

    return ask


async def gather(*calls: Callable[[], Awaitable[object]]) -> list[object]:
    """Run ``calls`` concurrently; return their results in order."""
    results: list[object] = [None] * len(calls)

    async def run(index: int) -> None:
        results[index] = await calls[index]()

    async with anyio.create_task_group() as task_group:
        for index in range(len(calls)):
            task_group.start_soon(run, index)
    return results


async def followers(client: Redis, dedup: RedisDeduplicator, name: str, count: int) -> None:
    """Wait until ``count`` flights of other deduplicators follow the execution of ``name``."""
    channel = f"{dedup.prefix}done:{name}"
    with anyio.fail_after(10):
        # Polling: the state is in Redis, there is no event to wait on.
        while (await client.pubsub_numsub(channel))[0][1] < count:  # noqa: ASYNC110
            await anyio.sleep(0.005)


@pytest.mark.anyio
async def test_concurrent_identical_calls_run_once_and_share_the_result(client: Redis) -> None:
    model = Model()
    ask = make_ask(model, client)

    async def release() -> None:
        await anyio.wait_all_tasks_blocked()
        model.release.set()

    results = await gather(*[lambda: ask("hello")] * 10, release)
    assert model.prompts == ["hello"]
    assert all(result is results[0] for result in results[:10])
    assert results[0] == ["llama3", "answer to hello"]


@pytest.mark.anyio
async def test_the_same_function_in_two_processes_shares_one_execution(client: Redis) -> None:
    model = Model()
    here, there = make_ask(model, client), make_ask(model, client)

    async def release() -> None:
        await anyio.wait_all_tasks_blocked()
        await followers(client, there.deduplicator, '[["hello"]]', 1)
        model.release.set()

    async def later() -> list[str]:
        await anyio.wait_all_tasks_blocked()  # "here" leads
        return await there("hello")

    results = await gather(lambda: here("hello"), later, release)
    assert model.prompts == ["hello"]
    assert results[:2] == [["llama3", "answer to hello"]] * 2
    assert here.deduplicator.stats.executions == 1
    assert there.deduplicator.stats.remote == 1


@pytest.mark.anyio
async def test_different_arguments_run_separately(client: Redis) -> None:
    model = Model()
    model.release.set()
    ask = make_ask(model, client)
    results = await gather(lambda: ask("hello"), lambda: ask("bye"), lambda: ask("hello", "phi"))
    assert sorted(map(str, model.prompts)) == ["bye", "hello", "hello"]
    assert results == [
        ["llama3", "answer to hello"],
        ["llama3", "answer to bye"],
        ["phi", "answer to hello"],
    ]


@pytest.mark.anyio
async def test_positional_and_keyword_arguments_are_different_keys(client: Redis) -> None:
    model = Model()
    model.release.set()
    ask = make_ask(model, client, ttl=60)
    await ask("hello")
    await ask(prompt="hello")
    await ask("hello")
    assert model.prompts == ["hello", "hello"]


@pytest.mark.anyio
async def test_equal_numbers_are_one_key_as_in_process(client: Redis) -> None:
    model = Model()
    model.release.set()
    ask = make_ask(model, client, ttl=60)
    for number in (1, 1.0, True):
        assert await ask(number) == ["llama3", "answer to 1"]
    assert model.prompts == [1]


@pytest.mark.anyio
async def test_key_function_collapses_the_calls_it_maps_together(client: Redis) -> None:
    model = Model()
    ask = make_ask(model, client, key=lambda prompt, model_name="llama3": prompt.casefold())

    async def release() -> None:
        await anyio.wait_all_tasks_blocked()
        model.release.set()

    results = await gather(lambda: ask("Hello"), lambda: ask("HELLO", "phi"), release)
    assert model.prompts == ["Hello"]
    assert results[0] is results[1]


@pytest.mark.anyio
async def test_two_functions_with_equal_arguments_never_share(client: Redis) -> None:
    first, second = Model(), Model()
    first.release.set()
    second.release.set()

    @deduplicate(client, ttl=60)
    async def ask_first(prompt: str) -> list[str]:
        return await first.answer(prompt)

    @deduplicate(client, ttl=60)
    async def ask_second(prompt: str) -> list[str]:
        return await second.answer(prompt)

    await ask_first("hello")
    await ask_second("hello")
    assert (first.prompts, second.prompts) == (["hello"], ["hello"])


@pytest.mark.anyio
async def test_stats_count_the_decorated_calls(client: Redis) -> None:
    model = Model()
    ask = make_ask(model, client, ttl=60)

    async def release() -> None:
        await anyio.wait_all_tasks_blocked()
        model.release.set()

    await gather(lambda: ask("hello"), lambda: ask("hello"), lambda: ask("bye"), release)
    await ask("hello")
    dedup = ask.deduplicator
    assert isinstance(dedup, RedisDeduplicator)
    assert dedup.stats == RedisDedupStats(
        calls=4, shared=1, executions=2, remote=0, cache_hits=1, errors=0, takeovers=0, fallbacks=0
    )
    assert dedup.in_flight == 0


@pytest.mark.anyio
async def test_ttl_serves_the_result_to_the_function_in_another_process(client: Redis) -> None:
    model = Model()
    model.release.set()
    await make_ask(model, client, ttl=60)("hello")
    later = make_ask(model, client, ttl=60)
    assert await later("hello") == ["llama3", "answer to hello"]
    assert model.prompts == ["hello"]
    assert later.deduplicator.stats.cache_hits == 1


@pytest.mark.anyio
async def test_forget_takes_the_call_key_as_in_process(client: Redis) -> None:
    model = Model()
    model.release.set()
    ask = make_ask(model, client, ttl=60)
    await ask("hello", model_name="phi")
    await ask.deduplicator.forget((("hello",), (("model_name", "phi"),)))
    await ask("hello", model_name="phi")
    assert model.prompts == ["hello", "hello"]


@pytest.mark.anyio
async def test_redis_keys_start_with_the_prefix_and_the_functions_name(client: Redis) -> None:
    model = Model()
    model.release.set()
    ask = make_ask(model, client, ttl=60, prefix="bot:")
    await ask("hello")
    name = f"{make_ask.__module__}.make_ask.<locals>.ask"
    assert ask.deduplicator.prefix == f"bot:{name}:"
    keys = await client.keys("*")
    assert f'bot:{name}:cache:[["hello"]]'.encode() in keys
    assert all(key.startswith(f"bot:{name}:".encode()) for key in keys)


def test_a_callable_object_is_named_after_its_type() -> None:
    class Ask:
        async def __call__(self, prompt: str) -> str:
            return prompt

    ask = deduplicate(UNREACHABLE, prefix="bot:")(Ask())
    assert ask.deduplicator.prefix == f"bot:{__name__}.{Ask.__qualname__}:"


@pytest.mark.anyio
async def test_unhashable_arguments_raise_dedup_key_error_naming_the_function(
    client: Redis,
) -> None:
    ask = make_ask(Model(), client)
    with pytest.raises(TypeError, match=r"ask\(\): the deduplication key .* is not hashable"):
        await ask(["a", "b"])


@pytest.mark.anyio
async def test_arguments_json_cannot_hold_raise_redis_key_error_naming_the_function(
    client: Redis,
) -> None:
    ask = make_ask(Model(), client)
    with pytest.raises(RedisKeyError, match=r"ask\(\): the key .* cannot be written as JSON"):
        await ask(frozenset({"a"}))


@pytest.mark.anyio
async def test_url_form_builds_a_client_that_aclose_closes(redis_url: str) -> None:
    model = Model()
    model.release.set()
    ask = make_ask(model, redis_url)
    assert await ask("hello") == ["llama3", "answer to hello"]
    await ask.deduplicator.aclose()


def test_signature_name_and_docstring_are_kept() -> None:
    @deduplicate(UNREACHABLE)
    async def ask(prompt: str, *, model: str = "llama3") -> str:
        """Ask the model."""
        return prompt

    assert (ask.__name__, ask.__doc__) == ("ask", "Ask the model.")
    assert str(inspect.signature(ask)) == "(prompt: 'str', *, model: 'str' = 'llama3') -> 'str'"


def test_async_generator_functions_are_refused() -> None:
    with pytest.raises(TypeError, match=r"decorate it with botperf\.deduplicate"):

        @deduplicate(UNREACHABLE)
        async def chunks() -> AsyncIterator[str]:
            yield "a"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"prefix": ""}, InvalidOptionError, "prefix must be a non-empty str"),
        ({"ttl": -1}, InvalidOptionError, "ttl must be a finite number of seconds, above 0"),
        ({"codec": "json"}, InvalidOptionError, "codec must be None or an object with encode"),
        ({"cancel_abandoned": "yes"}, InvalidOptionError, "cancel_abandoned must be True or"),
    ],
)
def test_bad_options_are_refused_before_decorating(
    options: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        deduplicate(UNREACHABLE, **options)


def test_calling_on_trio_raises_asyncio_required(redis_url: str) -> None:
    ask = make_ask(Model(), redis_url)
    with pytest.raises(RedisAsyncioRequiredError, match=r"RedisDeduplicator\.run needs"):
        anyio.run(ask, "hello", backend="trio")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("first", "second"),
    [(1, True), (("a", 2.0), ["a", 2]), ({"n": 0.0}, {"n": False}), (-0.0, 0)],
)
async def test_run_keys_equal_in_python_are_one_key(
    client: Redis, first: object, second: object
) -> None:
    model = Model()
    model.release.set()
    dedup = RedisDeduplicator(client, ttl=60)
    await dedup.run(first, model.answer, "first")
    assert await dedup.run(second, model.answer, "second") == ["llama3", "answer to first"]
    assert model.prompts == ["first"]
