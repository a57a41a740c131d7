"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from redis_server import RedisServer, RedisServerError

if TYPE_CHECKING:
    from examples.chatcore.fake_ollama import FakeOllama

# The default for every property: no per-example deadline (200 ms) and no health check
# failing a test for slow data generation. Both measure the machine, which on CI is shared
# and noisy, and say nothing about the behaviour tested.
settings.register_profile("botperf", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("botperf")


def pytest_configure(config: pytest.Config) -> None:
    # ollama-python leaves httpx's line iterator to the garbage collector when a stream ends
    # on an {"error": ...} line; trio warns about it (examples/chatcore/llm.py explains).
    # So does httpx's request body iterator when a timeout stops a request mid-send, which
    # a busy machine sees.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:Async generator 'httpx\.(_models\.Response\.aiter_\w+"
        r"|_content\.ByteStream\.__aiter__)' was garbage:ResourceWarning",
    )
    # discord.py (voice support) imports audioop, deprecated since Python 3.11.
    config.addinivalue_line("filterwarnings", "ignore:'audioop' is deprecated:DeprecationWarning")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once per backend."""
    return str(request.param)


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """The example bot's Ollama-compatible server on 127.0.0.1, fast enough for tests."""
    from examples.chatcore.fake_ollama import FakeOllama

    with FakeOllama(time_to_first_token=0.01, token_delay=0.001) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port for the whole run; skipped if not installed.

    With BOTPERF_REQUIRE_REDIS=1 (as in CI), a missing redis-server fails the tests.
    """
    try:
        server = RedisServer()
    except RedisServerError as exc:
        if os.environ.get("BOTPERF_REQUIRE_REDIS") == "1":
            pytest.fail(f"{exc}; BOTPERF_REQUIRE_REDIS=1 requires it")
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's redis-server, emptied for this test."""
    redis_server.flush()
    return redis_server.url
