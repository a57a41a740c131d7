"""What the chat front ends (Discord, the console, the demo) expect from the bot's core.

The core owns everything that can be tested without a chat platform: history, the LLM call,
errors, metrics. The front ends (``examples/discord_bot/bot.py``, ``console.py``,
``examples/discord_bot/demo.py``) only see this protocol, so the core can be swapped without
touching them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from .llm import LLMErrorKind

__all__ = ["ChatCore", "Reply"]


@dataclass(frozen=True)
class Reply:
    """The core's answer to one message."""

    text: str
    """What to show the user: the model's reply, or a short explanation of what failed."""
    error: LLMErrorKind | None = None
    """Why the model could not answer, or ``None`` when ``text`` is its reply."""
    limited: bool = False
    """Whether the rate limiter refused the message: ``text`` is then the "slow down" notice,
    or empty when the author was told already (send nothing)."""

    @property
    def ok(self) -> bool:
        """Whether ``text`` is the model's reply."""
        return self.error is None


class ChatCore(Protocol):
    """A chat bot's brain, free of Discord. Never raises for an LLM failure: it answers.

    A front end awaits `start` once before the first message and `aclose` once
    at exit, both from the same task (the core may run background work in a task group).
    """

    async def start(self) -> None:
        """Start background work (the metrics writer's flusher)."""
        ...

    async def handle(self, channel_id: int, author: str, text: str) -> Reply:
        """Answer ``text`` said by ``author`` in ``channel_id``, remembering the exchange."""
        ...

    def stream(self, channel_id: int, author: str, text: str) -> AsyncGenerator[str, None]:
        """Like `handle`, yielding the reply in pieces as the model produces them.

        An async generator (an ``async def`` with ``yield``, or a function returning one).
        A failure ends the stream with a piece explaining it. A stream that yields no piece
        at all means there is nothing to send (a message the rate limiter refused, whose
        author was told already). Callers that may stop early close it with
        ``contextlib.aclosing``.
        """
        ...

    async def reset(self, channel_id: int) -> None:
        """Forget the channel's history."""
        ...

    async def aclose(self) -> None:
        """Release resources and flush what must be flushed (metrics). Called once, at exit."""
        ...
