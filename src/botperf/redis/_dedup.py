"""Single-flight across processes: one execution per key among every process on one Redis."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import reprlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast, final

import anyio
from redis.asyncio import Redis
from typing_extensions import ParamSpec

from .._dedup import Deduplicator, call_key
from .._exceptions import InvalidOptionError
from .._options import check_seconds_option
from ._codec import Codec, JsonCodec
from ._connection import Connection, check_client_options, translate_errors
from ._errors import RedisCommandError, RedisKeyError, RedisRemoteError, RedisUnavailableError
from ._resource import RedisResource

__all__ = ["RedisDedupStats", "RedisDeduplicator", "deduplicate"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

# Take the lock, or say who holds it, in one atomic step: a caller that finds the lock
# taken knows which execution it follows, even if that one ends a moment later.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

# Extend the lock only while it is still ours (it may have expired and been taken).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# The leader's outcome: kept a while under the execution's token for followers that
# subscribe late, cached under the key with ttl, published, and the lock released.
_PUBLISH = """
local lock, outcome, cache = KEYS[1], KEYS[2], KEYS[3]
local token, payload, grace_ms, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('SET', outcome, payload, 'PX', grace_ms)
if tonumber(ARGV[5]) > 0 then
    redis.call('SET', cache, ARGV[6], 'PX', ARGV[5])
end
redis.call('PUBLISH', channel, token .. '\\n' .. payload)
if redis.call('GET', lock) == token then
    redis.call('DEL', lock)
end
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Outcome payloads: one byte saying what follows.
_OK = b"o"
_ERROR = b"e"


@final
@dataclass(frozen=True, slots=True)
class RedisDedupStats:
    """A snapshot of a ``RedisDeduplicator``'s counters in this process, since it was created.

    Each call either joins a call already waiting in this process (``shared``) or
    becomes this process's one *flight* for its key, which ends in exactly one of:
    ``executions`` (``fn`` ran here), ``remote`` (another process ran it),
    ``cache_hits`` (the ``ttl`` cache in Redis answered). So, when no flight was
    abandoned by all its callers, ``calls == shared + executions + remote +
    cache_hits``.

    Attributes:
        calls: Calls of ``run()``.
        shared: Calls that joined a flight already running in this process.
        executions: Flights that ran ``fn`` in this process (``fallbacks`` included).
        remote: Flights answered by an execution in another process.
        cache_hits: Flights answered from the ``ttl`` cache in Redis.
        errors: Flights whose outcome was an exception, raised here or in another
            process.
        takeovers: Executions started here after the process running the key's
            execution vanished (its lock expired without an outcome).
        fallbacks: Executions run here without coordination because Redis could not
            be reached (each was logged).
    """

    calls: int
    shared: int
    executions: int
    remote: int
    cache_hits: int
    errors: int
    takeovers: int
    fallbacks: int


@final
class _Keys:
    """The Redis keys and channel of one deduplication key."""

    __slots__ = ("cache", "channel", "lock", "prefix")

    def __init__(self, prefix: str, name: str) -> None:
        self.prefix = f"{prefix}{name}"
        self.lock = f"{prefix}lock:{name}"
        self.cache = f"{prefix}cache:{name}"
        self.channel = f"{prefix}done:{name}"

    def outcome(self, token: str) -> str:
        return f"{self.prefix}:outcome:{token}"


@final
class _Remote:
    """An outcome that came through Redis: a decoded result or a remote error."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


@final
class RedisDeduplicator(RedisResource):
    """``Deduplicator`` across processes: concurrent calls with an equal key run once in all.

    Every process (shard, replica) that builds a deduplicator on the same Redis with the
    same ``prefix`` shares executions: the first call for a key, in any process, runs
    ``fn``; calls with the key in every process that arrive while it runs wait for it
    and get its result.

    How: in each process, calls with one key are first collapsed by an in-process
    ``Deduplicator`` into one *flight*, which keeps its guarantees (a cancelled caller
    affects only itself; once every caller has gone, the flight is cancelled, unless
    ``cancel_abandoned=False``). The flight then takes the key's lock in Redis
    (``SET NX PX`` with a random token, in a script that otherwise returns the holder's
    token). The process holding the lock runs ``fn``, renewing the lock every
    ``lock_ttl / 3`` seconds from a task beside ``fn`` (both in the flight's task,
    which the in-process ``Deduplicator`` owns); then, in one script, it stores the
    outcome under its token for ``lock_ttl`` seconds, caches a result for ``ttl``
    seconds, publishes the outcome on the key's pub/sub channel and releases the
    lock. The other flights subscribe to that channel, then read the stored outcome
    (in case it came before they subscribed), then wait for the message. Pub/sub
    rather than a blocking list: one message reaches every waiting process, however
    many there are.

    If the leader's process dies, its lock expires within ``lock_ttl`` seconds; the
    followers check the lock every ``lock_ttl / 3`` seconds while they wait, and on
    finding it gone without an outcome, compete to take it (``NX``: exactly one
    wins and runs ``fn``; the others follow it). So no caller waits forever. If the
    leader is cancelled (every caller in its process left), it releases its lock at
    once and a follower takes over.

    Results cross processes through ``codec`` (JSON by default): callers in the
    leader's process get the result object itself, callers elsewhere an equal
    decoded value (the same object for every caller of one process). An exception
    reaches the leader's callers as itself and other processes' callers as
    ``RedisRemoteError`` with its type and message. Exceptions are never cached.

    When Redis cannot be reached (or answers nothing within ``timeout``) before
    ``fn`` starts, the flight runs ``fn`` locally, logs a warning and counts a
    fallback: calls are still collapsed within the process, not across processes.
    A refused password or ACL user is no outage but a configuration error: it raises
    a ``RuntimeError`` saying so, and never falls back.
    A Redis failure after ``fn`` started does not fail the leader's callers; their
    followers elsewhere take over once the lock expires.

    Runs on asyncio only (redis-py's asyncio client); awaiting it on trio raises a
    ``RuntimeError``. `deduplicate` is its decorator form.

    Args:
        redis: A ``redis.asyncio.Redis`` client (used as it is, never closed by the
            deduplicator), or a URL from which it builds a client with socket timeouts
            of ``timeout`` and closes it in ``aclose()``.
        prefix: The start of every key and channel it uses (a non-empty str).
        ttl: Seconds for which a successful result is also served, from Redis, to
            later calls with its key in any process; ``None`` caches nothing.
        codec: Turns results into bytes and back (``JsonCodec()`` by default); the
            same in every process.
        lock_ttl: Seconds a lock outlives its leader's last renewal (above 0): how
            long a dead leader's followers may wait before one takes over.
        timeout: Seconds each Redis command may take, connecting included (above 0).
        cancel_abandoned: As for ``Deduplicator``: whether a flight is cancelled
            once all its callers in this process have gone.

    Raises:
        InvalidOptionError: If ``ttl``, ``lock_ttl`` or ``timeout`` is not a positive
            finite number (``ttl`` may be None), ``prefix`` is empty, ``redis`` is not a
            client or a URL or decodes responses (``decode_responses=True``), ``codec`` is
            not a ``Codec``, or ``cancel_abandoned`` is not a bool.
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        prefix: str = "botperf:dedup:",
        ttl: float | None = None,
        codec: Codec | None = None,
        lock_ttl: float = 10.0,
        timeout: float = 5.0,
        cancel_abandoned: bool = True,
    ) -> None:
        _check_options(
            "RedisDeduplicator", redis, prefix, ttl, codec, lock_ttl, timeout, cancel_abandoned
        )
        self._connection = Connection(redis, timeout)
        client = self._connection.client
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise InvalidOptionError(
                "RedisDeduplicator",
                "redis",
                client,
                "a client with decode_responses=False: results travel as the codec's bytes",
            )
        self._prefix = prefix
        self._ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        self._codec: Codec = JsonCodec() if codec is None else codec
        self._lock_ttl = float(lock_ttl)
        self._lock_ms = max(1, round(lock_ttl * 1000))
        self._local = Deduplicator(cancel_abandoned=cancel_abandoned)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._publish = client.register_script(_PUBLISH)
        self._release = client.register_script(_RELEASE)
        self._executions = 0
        self._remote = 0
        self._cache_hits = 0
        self._errors = 0
        self._takeovers = 0
        self._fallbacks = 0

    @property
    def prefix(self) -> str:
        """The start of every Redis key and channel this deduplicator uses."""
        return self._prefix

    @property
    def in_flight(self) -> int:
        """How many keys have a flight running in this process now."""
        return self._local.in_flight

    @property
    def stats(self) -> RedisDedupStats:
        """A snapshot of this process's counters; O(1)."""
        local = self._local.stats
        return RedisDedupStats(
            calls=local.calls,
            shared=local.shared,
            executions=self._executions,
            remote=self._remote,
            cache_hits=self._cache_hits,
            errors=self._errors,
            takeovers=self._takeovers,
            fallbacks=self._fallbacks,
        )

    async def run(
        self, key: object, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Return ``await fn(*args, **kwargs)``, run once for concurrent calls in all processes.

        Args:
            key: What identifies equal calls, in every process: a value JSON can hold
                (str, int, float, bool, None, tuples, lists, dicts with str keys).
                Keys equal in Python are one key (``1``, ``1.0`` and ``True``), and so
                are a tuple and a list with equal items. O(size of the key).
            fn: The async callable; only the leader's ``fn`` and arguments run.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            The execution's result: in the process that ran it, the result object
            itself; elsewhere, its value decoded by ``codec``.

        Raises:
            TypeError: If ``key`` cannot be written as JSON.
            RedisRemoteError: If the execution raised in another process.
            RuntimeError: If Redis refused a command, the password or the ACL user (see
                the error), or outside an asyncio event loop.
            BaseException: Whatever ``fn`` raised, when it ran in this process.
        """
        return await self._run(key, key_name(key), fn, args, kwargs)

    async def forget(self, key: object) -> None:
        """Make the next call with ``key`` start afresh: drop its cached result in Redis.

        Calls waiting in this process keep their flight; new ones start another,
        which follows the execution still running for ``key`` (in any process), if
        one holds the lock: that one's result is still cached with ``ttl``.

        Raises:
            TypeError: If ``key`` cannot be written as JSON.
            RedisUnavailableError: If Redis cannot be reached or does not answer in time.
            RuntimeError: If Redis refused the command, the password or the ACL user.
        """
        name = key_name(key)
        self._local.forget(name)
        with self._connection.guard("RedisDeduplicator.forget"):
            await self._connection.client.delete(_Keys(self._prefix, name).cache)

    async def _run(
        self,
        key: object,
        name: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """`run` with the key's JSON text ``name`` already made."""
        return cast(T, await self._local.run(name, self._flight, key, name, fn, args, kwargs))

    def __repr__(self) -> str:
        return (
            f"<RedisDeduplicator {self._connection.address} prefix={self._prefix!r} "
            f"in_flight={self.in_flight}>"
        )

    async def _flight(
        self,
        key: object,
        name: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """This process's one flight for a key: follow another process's execution, or lead."""
        keys = _Keys(self._prefix, name)
        try:
            decided = await self._follow_or_acquire(key, keys)
        except RedisUnavailableError as exc:
            logger.warning(
                "Redis unavailable, running the call for key %s in this process only: %s",
                reprlib.repr(key),
                exc,
            )
            self._fallbacks += 1
            return await self._execute(fn, args, kwargs)
        if isinstance(decided, _Remote):
            if decided.error is not None:
                self._errors += 1
                raise decided.error
            return decided.value
        return await self._lead(key, keys, decided, fn, args, kwargs)

    async def _follow_or_acquire(self, key: object, keys: _Keys) -> str | _Remote:
        """Return the outcome of a cached or remote execution, or our lock's token."""
        guard = self._connection.guard
        client = self._connection.client
        vanished = False
        while True:
            if self._ttl_ms:
                with guard("RedisDeduplicator.run"):
                    # bytes: the constructor refuses clients that decode responses.
                    cached = cast("bytes | None", await client.get(keys.cache))
                if cached is not None:
                    self._cache_hits += 1
                    return _Remote(self._decode(key, cached))
            token = uuid.uuid4().hex
            with guard("RedisDeduplicator.run"):
                holder = _text(await self._acquire(keys=[keys.lock], args=[token, self._lock_ms]))
            if holder == token:
                if vanished:
                    self._takeovers += 1
                return token
            outcome = await self._wait_for(key, keys, holder)
            if outcome is not None:
                self._remote += 1
                return outcome
            vanished = True

    async def _wait_for(self, key: object, keys: _Keys, holder: str) -> _Remote | None:
        """Wait for the outcome of ``holder``'s execution; None if it vanished without one."""
        guard = self._connection.guard
        client = self._connection.client
        outcome_key = keys.outcome(holder)
        pubsub = client.pubsub()
        try:
            with guard("RedisDeduplicator.run"):
                await pubsub.subscribe(keys.channel)
            while True:
                # First and after each quiet spell: the outcome may have been published
                # before we subscribed, or the leader may have died.
                with guard("RedisDeduplicator.run"):
                    current, stored = cast(
                        "list[bytes | None]", await client.mget([keys.lock, outcome_key])
                    )
                if stored is not None:
                    return self._outcome(key, stored)
                if current is None or current.decode() != holder:
                    return None
                with translate_errors(self._connection.address, "RedisDeduplicator.run"):
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self._lock_ttl / 3
                    )
                if message is not None:
                    token, _, payload = bytes(message["data"]).partition(b"\n")
                    if token.decode() == holder:
                        return self._outcome(key, payload)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._connection.timeout):
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
                except Exception:  # the connection is being dropped anyway
                    logger.debug("closing a pub/sub connection failed", exc_info=True)

    async def _lead(
        self,
        key: object,
        keys: _Keys,
        token: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run ``fn`` holding the lock, renewing it, then hand the outcome to every process."""
        failure: Exception | None = None
        settled = False
        try:
            async with anyio.create_task_group() as task_group:
                # Its own scope, so that stopping it does not cancel this task too.
                renewal = anyio.CancelScope()
                task_group.start_soon(self._keep_lock, keys, token, renewal)
                try:
                    result = await self._execute(fn, args, kwargs)
                except Exception as exc:  # kept out of the task group's exception group
                    failure = exc
                finally:
                    renewal.cancel()
            settled = True
        finally:
            if not settled:
                # Cancelled (every caller here left): free the lock now, so that a
                # follower takes over at once instead of after lock_ttl.
                with anyio.CancelScope(shield=True):
                    await self._quietly(self._release(keys=[keys.lock], args=[token]), key)
        if failure is not None:
            payload = _ERROR + json.dumps([type(failure).__qualname__, str(failure)]).encode()
            await self._quietly(self._announce(keys, token, payload, None), key)
            raise failure
        try:
            encoded = self._codec.encode(result)
        except Exception as exc:
            logger.warning(
                "the codec could not encode the result for key %s: %r",
                reprlib.repr(key),
                exc,
            )
            problem = f"the result could not be encoded by {self._codec!r}: {exc!r}"
            payload = _ERROR + json.dumps(["CodecError", problem]).encode()
            await self._quietly(self._announce(keys, token, payload, None), key)
        else:
            await self._quietly(self._announce(keys, token, _OK + encoded, encoded), key)
        return result

    async def _execute(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self._executions += 1
        try:
            return await fn(*args, **kwargs)
        except Exception:
            self._errors += 1
            raise

    async def _announce(
        self, keys: _Keys, token: str, payload: bytes, cached: bytes | None
    ) -> None:
        ttl_ms = self._ttl_ms if cached is not None else 0
        await self._publish(
            keys=[keys.lock, keys.outcome(token), keys.cache],
            args=[token, payload, self._lock_ms, keys.channel, ttl_ms, cached or b""],
        )

    async def _keep_lock(self, keys: _Keys, token: str, scope: anyio.CancelScope) -> None:
        """Renew the lock every ``lock_ttl / 3`` s until ``scope`` is cancelled; never raises."""
        with scope:
            await self._renew_until_lost(keys, token)

    async def _renew_until_lost(self, keys: _Keys, token: str) -> None:
        while True:
            await anyio.sleep(self._lock_ttl / 3)
            try:
                with self._connection.guard("RedisDeduplicator.run"):
                    renewed = await self._renew(keys=[keys.lock], args=[token, self._lock_ms])
            except (RedisUnavailableError, RedisCommandError) as exc:
                logger.warning("could not renew the lock of %s: %s", keys.lock, exc)
                continue
            if not renewed:
                logger.warning(
                    "lost the lock of %s (it expired): another process may run the call too",
                    keys.lock,
                )
                return

    async def _quietly(self, step: Awaitable[object], key: object) -> None:
        """Run a bookkeeping step after ``fn``; a Redis failure there is logged, not raised.

        Followers elsewhere then take over once the lock expires.
        """
        try:
            with self._connection.guard("RedisDeduplicator.run"):
                await step
        except (RedisUnavailableError, RedisCommandError) as exc:
            logger.warning(
                "could not hand the outcome for key %s to other processes: %s",
                reprlib.repr(key),
                exc,
            )

    def _outcome(self, key: object, payload: bytes) -> _Remote:
        kind, data = payload[:1], payload[1:]
        if kind == _OK:
            return _Remote(self._decode(key, data))
        error_type, message = json.loads(data)
        return _Remote(None, RedisRemoteError(key, error_type, message))

    def _decode(self, key: object, data: bytes) -> Any:
        try:
            return self._codec.decode(data)
        except Exception as exc:
            raise RedisCommandError(
                "RedisDeduplicator.run",
                f"{self._codec!r} could not decode the result for key {reprlib.repr(key)} "
                f"({exc!r}); every process must use the same codec",
            ) from exc


def _check_options(
    owner: str,
    redis: object,
    prefix: object,
    ttl: float | None,
    codec: object,
    lock_ttl: float,
    timeout: float,
    cancel_abandoned: object,
) -> None:
    """Raise for an option ``RedisDeduplicator`` cannot take (see its docstring)."""
    if not isinstance(cancel_abandoned, bool):
        raise InvalidOptionError(owner, "cancel_abandoned", cancel_abandoned, "True or False")
    check_client_options(owner, redis, prefix, timeout, example_prefix="bot:dedup:")
    if ttl is not None:
        check_seconds_option(owner, "ttl", ttl)
    check_seconds_option(owner, "lock_ttl", lock_ttl)
    if codec is not None and not isinstance(codec, Codec):
        raise InvalidOptionError(
            owner, "codec", codec, "None or an object with encode() and decode() methods"
        )


class _RedisDeduplicatedFunction(Protocol[P, R_co]):
    """An async function wrapped by `deduplicate`, with its signature kept."""

    @property
    def deduplicator(self) -> RedisDeduplicator:
        """The `RedisDeduplicator` behind this function."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...


class _RedisDecorator(Protocol):
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> _RedisDeduplicatedFunction[P, T]: ...


def deduplicate(
    redis: Redis | str,
    *,
    key: Callable[..., Hashable] | None = None,
    ttl: float | None = None,
    prefix: str = "botperf:dedup:",
    codec: Codec | None = None,
    lock_ttl: float = 10.0,
    timeout: float = 5.0,
    cancel_abandoned: bool = True,
) -> _RedisDecorator:
    """Decorate an async function so concurrent calls with an equal key run once in all processes.

    `botperf.deduplicate` across processes: each decorated function gets its own
    `RedisDeduplicator`, available as its ``deduplicator`` attribute, whose Redis keys
    start with ``prefix`` followed by the function's module and qualified name (as
    ``"botperf:dedup:mybot.llm.ask_llm:"``), so that two functions never share an
    execution, while one function shares its executions with the same function in
    every other process. The function keeps its signature for type checkers.

    Args:
        redis: A ``redis.asyncio.Redis`` client (used as it is, never closed; pass one
            client to several decorators to share its connections), or a URL from
            which the deduplicator builds a client of its own, closed by ``await
            fn.deduplicator.aclose()``.
        key: Called with the call's arguments, returns the deduplication key, which
            must be hashable and a value JSON can hold (str, int, float, bool, None,
            tuples). By default the key is made of the arguments themselves, as for
            `botperf.deduplicate`: positional and keyword arguments count
            separately, and ``1``, ``1.0`` and ``True`` are equal.
        ttl: As for `RedisDeduplicator`.
        prefix: The start of the Redis keys, before the function's name.
        codec: As for `RedisDeduplicator`.
        lock_ttl: As for `RedisDeduplicator`.
        timeout: As for `RedisDeduplicator`.
        cancel_abandoned: As for `RedisDeduplicator`.

    Returns:
        The decorator.

    Raises:
        InvalidOptionError: At once, for an option of the wrong type or out of its range
            (see `RedisDeduplicator`).
        TypeError: When decorating an async generator function (streams are shared
            within a process only: use `botperf.deduplicate`).
        TypeError: When the decorated function is called, if the key (by default
            its arguments) is not hashable.
        TypeError: When the decorated function is called, if JSON cannot hold the key
            (by default its arguments).
    """
    _check_options(
        "botperf.redis.deduplicate", redis, prefix, ttl, codec, lock_ttl, timeout, cancel_abandoned
    )

    def decorator(fn: Callable[..., Awaitable[Any]], /) -> Any:
        if inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"@botperf.redis.deduplicate cannot share the stream of {fn.__qualname__}() "
                "across processes: decorate it with botperf.deduplicate, which shares "
                "streams within a process"
            )
        name = f"{_name_of(fn, '__module__')}.{_name_of(fn, '__qualname__')}"
        where = f"@botperf.redis.deduplicate on {name}()"
        dedup = RedisDeduplicator(
            redis,
            prefix=f"{prefix}{name}:",
            ttl=ttl,
            codec=codec,
            lock_ttl=lock_ttl,
            timeout=timeout,
            cancel_abandoned=cancel_abandoned,
        )

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            # Refused as by botperf.deduplicate if unhashable, whatever JSON could hold.
            key_of_call = call_key(key, args, kwargs, where)
            return await dedup._run(key_of_call, key_name(key_of_call, where), fn, args, kwargs)

        wrapper.deduplicator = dedup  # type: ignore[attr-defined]
        return wrapper

    return cast(_RedisDecorator, decorator)


def _name_of(fn: object, attribute: str) -> str:
    """``fn``'s module or qualified name, or its type's (for a callable object)."""
    value = getattr(fn, attribute, None)
    return value if isinstance(value, str) else str(getattr(type(fn), attribute))


def key_name(key: object, where: str = "RedisDeduplicator.run()") -> str:
    """The key's JSON text, on which every process agrees.

    Raises:
        RedisKeyError: If JSON cannot hold ``key`` (a ``TypeError``).
    """
    try:
        return json.dumps(_canonical(key), separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise RedisKeyError(key, str(exc) or type(exc).__name__, where) from None


def _canonical(value: object) -> object:
    """``value`` with equal numbers written alike, so that keys equal in Python are one key.

    ``1``, ``1.0`` and ``True`` are one dict key in Python (and one key for a
    ``Deduplicator``), but three JSON texts. Dict keys must be str: JSON would turn
    ``1`` into ``"1"``, so that two different keys would share one execution.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (tuple, list)):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str):
                raise TypeError(f"dict keys must be str, not {name!r}")
        return {name: _canonical(item) for name, item in value.items()}
    return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
