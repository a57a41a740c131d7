"""botperf.redis's public API is exactly what is documented; botperf works without redis."""

from __future__ import annotations

import subprocess
import sys

import pytest

import botperf.redis
from botperf import BotperfError
from botperf.redis._errors import (
    RedisAccessError,
    RedisAsyncioRequiredError,
    RedisCommandError,
    RedisKeyError,
)

DOCUMENTED_REDIS_API = {
    "Codec",
    "JsonCodec",
    "RedisDedupStats",
    "RedisDeduplicator",
    "RedisHistoryStore",
    "RedisRateLimiter",
    "RedisRemoteError",
    "RedisStreamSink",
    "RedisUnavailableError",
    "deduplicate",
}

# Imports run with redis-py hidden, as if `pip install botperf` had left it out.
WITHOUT_REDIS = "import sys; sys.modules['redis'] = None; "


def test_all_is_exactly_the_documented_api() -> None:
    assert set(botperf.redis.__all__) == DOCUMENTED_REDIS_API


def test_all_is_sorted_and_unique() -> None:
    assert list(botperf.redis.__all__) == sorted(set(botperf.redis.__all__))


def test_every_name_in_all_is_importable_and_claims_the_public_package() -> None:
    for name in botperf.redis.__all__:
        obj = getattr(botperf.redis, name)
        assert obj.__module__.startswith("botperf.redis."), name


def test_botperf_imports_without_redis_and_without_botperf_redis() -> None:
    code = WITHOUT_REDIS + (
        "import botperf; "
        "print(botperf.BotperfError.__name__, [m for m in sys.modules if 'botperf.redis' in m])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "BotperfError []"


def test_the_exported_errors_are_what_callers_catch() -> None:
    for error, builtin in (
        (botperf.redis.RedisUnavailableError, ConnectionError),
        (botperf.redis.RedisRemoteError, RuntimeError),
    ):
        assert issubclass(error, BotperfError)
        assert issubclass(error, builtin)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (RedisCommandError, RuntimeError),
        (RedisAccessError, RuntimeError),
        (RedisAsyncioRequiredError, RuntimeError),
        (RedisKeyError, TypeError),
    ],
)
def test_the_other_errors_are_builtins_and_not_exported(
    error: type[BotperfError], builtin: type[Exception]
) -> None:
    assert issubclass(error, BotperfError)
    assert issubclass(error, builtin)
    assert not issubclass(error, ConnectionError)
    assert not hasattr(botperf.redis, error.__name__)


def test_botperf_redis_without_redis_names_the_extra_to_install() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_REDIS + "import botperf.redis"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "ImportError: botperf.redis needs redis-py" in result.stderr
    assert "pip install 'botperf[redis]'" in result.stderr
