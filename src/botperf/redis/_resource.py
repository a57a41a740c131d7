"""The async-resource base of the Redis classes that own an asyncio client."""

from __future__ import annotations

from typing_extensions import Self

from ._connection import Connection

__all__ = ["RedisResource"]


class RedisResource:
    """``aclose()`` and ``async with`` for a class that talks to Redis through a `Connection`.

    The subclass sets ``_connection`` in its constructor. Closing closes the client only
    if the connection built it from a URL: a client given by the caller stays open.
    """

    _connection: Connection

    async def aclose(self) -> None:
        """Close the Redis client if it was built from a URL; a given client stays open."""
        await self._connection.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
