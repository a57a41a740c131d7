"""What the Redis backends share: the asyncio check, the client, timeouts and errors."""

from __future__ import annotations

# Only to detect trio: redis-py's asyncio client runs on asyncio alone (see require_asyncio).
import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import final

import anyio
from redis import Redis as SyncRedis
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .._exceptions import InvalidOptionError
from .._options import check_seconds_option
from ._errors import (
    RedisAccessError,
    RedisAsyncioRequiredError,
    RedisCommandError,
    RedisUnavailableError,
)

__all__ = [
    "Connection",
    "address_of",
    "check_client_options",
    "require_asyncio",
    "translate_errors",
]

# redis-py's classes for a refused password or ACL user. AuthenticationError is a
# ConnectionError to redis-py, but no retry or local fallback can fix a credential;
# AuthorizationError is missing from older redis-py.
_ACCESS_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.AuthenticationError,
    redis_errors.AuthenticationWrongNumberOfArgsError,
    redis_errors.NoPermissionError,
    *((redis_errors.AuthorizationError,) if hasattr(redis_errors, "AuthorizationError") else ()),
)

# The same refusals where redis-py kept Redis's answer as a plain ResponseError (older
# versions, a pipeline's annotated error) or a script's redis.call() met an ACL.
_ACCESS_ANSWER = re.compile(
    r"(?:^|: )(?:NOAUTH|WRONGPASS|NOPERM)\b|The user executing the script can't"
)


def check_client_options(
    owner: str, redis: object, prefix: object, timeout: object, *, example_prefix: str
) -> None:
    """Raise for a client, key prefix or timeout that a Redis class cannot take.

    Raises:
        InvalidOptionError: Naming ``owner``, the option and what it may be.
    """
    if type(prefix) is not str or not prefix:
        raise InvalidOptionError(
            owner, "prefix", prefix, f"a non-empty str such as {example_prefix!r}"
        )
    check_seconds_option(owner, "timeout", timeout)
    if not isinstance(redis, (str, Redis)):
        raise InvalidOptionError(
            owner,
            "redis",
            redis,
            "a redis.asyncio.Redis client or a URL such as 'redis://host:6379/0'",
        )


def require_asyncio(operation: str) -> None:
    """Raise ``RedisAsyncioRequiredError`` unless an asyncio event loop runs this thread.

    redis-py's asyncio client would otherwise fail deep inside on trio, with "no
    running event loop"; anyio has no public way to name the running backend.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RedisAsyncioRequiredError(operation) from None


@final
class Connection:
    """A redis-py asyncio client, with one timeout per call and botperf's errors.

    Given a URL, it builds a client it owns (and closes in ``aclose()``) with
    ``socket_connect_timeout`` and ``socket_timeout`` set to ``timeout``, retrying a
    command once on a connection error (a pooled connection that a Redis restart
    broke) but never on a timeout, which could run a non-idempotent script twice.
    Given a client, it uses it as it is and never closes it. Its owner has checked
    both arguments, and raises its own errors for them.
    """

    def __init__(self, redis: Redis | str, timeout: float) -> None:
        self.timeout = float(timeout)
        if isinstance(redis, str):
            self.client = Redis.from_url(
                redis,
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
                retry=Retry(
                    ExponentialWithJitterBackoff(base=0.01, cap=0.1),
                    retries=1,
                    supported_errors=(redis_errors.ConnectionError,),
                ),
            )
            self.owned = True
        else:
            self.client = redis
            self.owned = False
        self.address = address_of(self.client)

    @contextmanager
    def guard(self, operation: str) -> Iterator[None]:
        """Bound the block by ``timeout`` and turn redis-py's errors into botperf's.

        Raises:
            RedisAsyncioRequiredError: Outside an asyncio event loop.
            RedisUnavailableError: On a connection error or no answer in time.
            RedisAccessError: If Redis refused the password or the ACL user.
            RedisCommandError: If Redis answered with another error.
        """
        require_asyncio(operation)
        try:
            # fail_after outermost: its TimeoutError is an OSError, not for translate_errors.
            with anyio.fail_after(self.timeout), translate_errors(self.address, operation):
                yield
        except TimeoutError as exc:
            raise RedisUnavailableError(
                self.address, operation, f"no answer within {self.timeout:g} s"
            ) from exc

    async def aclose(self) -> None:
        """Close the client if this connection built it; a given client stays open."""
        if self.owned:
            await self.client.aclose()


@contextmanager
def translate_errors(address: str, operation: str) -> Iterator[None]:
    """Turn redis-py's errors in the block into botperf's (sync or async clients alike).

    Raises:
        RedisUnavailableError: On a connection error or a socket timeout.
        RedisAccessError: If Redis refused the password or the ACL user.
        RedisCommandError: If Redis answered with another error.
    """
    try:
        yield
    except (
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        redis_errors.ResponseError,
        OSError,
    ) as exc:
        problem = str(exc) or repr(exc)
        # First: redis-py's AuthenticationError is also a ConnectionError.
        if isinstance(exc, _ACCESS_ERRORS) or _ACCESS_ANSWER.search(problem):
            raise RedisAccessError(address, operation, problem) from exc
        if isinstance(exc, redis_errors.ResponseError):
            raise RedisCommandError(operation, f"Redis answered {exc}") from exc
        raise RedisUnavailableError(address, operation, problem) from exc


def address_of(client: Redis | SyncRedis) -> str:
    """The server a client talks to, as ``host:port/db`` or ``unix:<path>``."""
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        return f"unix:{options['path']}"
    return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}/{options.get('db', 0)}"
