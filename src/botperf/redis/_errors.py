"""The errors of ``botperf.redis``: two a caller catches, and the misuse it may not.

``RedisUnavailableError`` (Redis is away: retry later, or do without) and
``RedisRemoteError`` (the shared execution raised in another process) are exported from
``botperf.redis``. The others stand for a builtin (``RuntimeError``, ``TypeError``) and
are not exported: nothing but fixing the code or the configuration answers them.
"""

from __future__ import annotations

import reprlib

from .._exceptions import BotperfError

__all__ = [
    "RedisAccessError",
    "RedisAsyncioRequiredError",
    "RedisCommandError",
    "RedisKeyError",
    "RedisRemoteError",
    "RedisUnavailableError",
]


class RedisUnavailableError(BotperfError, ConnectionError):
    """Raised when Redis cannot be reached, or does not answer within the timeout.

    The operation may or may not have taken effect on the server: like any call over
    a network, a lost reply cannot tell.

    Attributes:
        address: The Redis server, as ``host:port/db`` or a Unix socket path.
        operation: What botperf was doing, such as ``"RedisHistoryStore.append"``.
    """

    def __init__(self, address: str, operation: str, problem: str) -> None:
        super().__init__(
            f"{operation} could not use Redis at {address}: {problem}; check that "
            "redis-server runs and is reachable from here, or raise the timeout option"
        )
        self.address = address
        self.operation = operation


class RedisRemoteError(BotperfError, RuntimeError):
    """Raised in callers whose shared execution raised in another process.

    The exception itself stays in the process that ran the call; this error carries
    its type's name and message.

    Attributes:
        key: The deduplication key.
        error_type: The qualified name of the exception's type, such as ``"ValueError"``.
        error_message: ``str()`` of the exception.
    """

    def __init__(self, key: object, error_type: str, error_message: str) -> None:
        super().__init__(
            f"the execution for key {reprlib.repr(key)} raised in another process: "
            f"{error_type}: {error_message}"
        )
        self.key = key
        self.error_type = error_type
        self.error_message = error_message


class RedisCommandError(BotperfError, RuntimeError):
    """Raised when Redis refuses a command, or a key holds data botperf did not write.

    Typical causes: another program uses keys under the same prefix (Redis answers
    ``WRONGTYPE``), the server is out of memory, or a read-only replica or an ACL
    refuses writes.

    Attributes:
        operation: What botperf was doing, such as ``"RedisHistoryStore.append"``.
        problem: Redis's answer, or what is wrong with the data.
    """

    _advice = (
        "give botperf a key prefix no other program uses, and check the server's memory "
        "limit and the user's permissions"
    )

    def __init__(self, operation: str, problem: str) -> None:
        super().__init__(f"{operation} failed: {problem}; {self._advice}")
        self.operation = operation
        self.problem = problem


class RedisAccessError(RedisCommandError):
    """Raised when Redis refuses the password or the ACL user: a configuration error.

    A ``RedisCommandError``, never a ``RedisUnavailableError``: retrying, or running
    without Redis, cannot help, so ``RedisDeduplicator`` never falls back on it.

    Attributes:
        address: The Redis server, as ``host:port/db`` or ``unix:<path>``.
    """

    _advice = (
        "this is a configuration error: check the password or ACL user in the Redis URL "
        "or client, and the user's ACL permissions"
    )

    def __init__(self, address: str, operation: str, answer: str) -> None:
        super().__init__(operation, f"Redis at {address} refused access ({answer})")
        self.address = address


class RedisAsyncioRequiredError(BotperfError, RuntimeError):
    """Raised when a ``botperf.redis`` class is awaited outside an asyncio event loop.

    redis-py's asyncio client runs only on asyncio, not on trio.

    Attributes:
        operation: The call that was made, such as ``"RedisHistoryStore.append"``.
    """

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"{operation} needs a running asyncio event loop (redis-py's asyncio client "
            "does not run on trio); call it from asyncio code, or from trio through "
            "anyio.from_thread.start_blocking_portal('asyncio') in a worker thread"
        )
        self.operation = operation


class RedisKeyError(BotperfError, TypeError):
    """Raised when a ``RedisDeduplicator`` key cannot be written as JSON.

    Processes agree on a key through its JSON text, so a key must be built from str,
    int, float, bool, None, lists and tuples, and dicts with str keys.

    Attributes:
        key: The key that was given.
    """

    def __init__(self, key: object, problem: str, where: str = "RedisDeduplicator.run()") -> None:
        super().__init__(
            f"{where}: the key {reprlib.repr(key)} cannot be written as JSON "
            f"({problem}); build it from str, int, float, bool, None, tuples and lists, "
            "for example (model, prompt.strip().casefold())"
        )
        self.key = key
