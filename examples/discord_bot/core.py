"""PHASE-1 STAND-IN CORE, to be replaced by the botperf-based core.

This core sends each channel's conversation to Ollama through :mod:`.llm` and nothing more: no
botperf primitives yet. It exists so that the console mode, the demo and the Discord adapter run
end to end while the primitives are being written; the real core keeps the same
:class:`~examples.discord_bot.protocol.ChatCore` interface and adds, in place of what is here:

- a ``botperf.HistoryStore`` (bounded channels, LRU eviction, token budget) instead of the
  unbounded ``dict`` of deques below;
- a ``botperf.Deduplicator`` in front of the LLM call, so a burst of identical questions costs
  one call instead of one each;
- ``botperf.timed`` and a ``botperf.BatchMetricsWriter`` recording ``message_in``, ``llm_call``
  and ``reply_out`` events, flushed by :meth:`PlainCore.aclose`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import AsyncGenerator
from typing import final

from .llm import ChatResult, LLMError, LLMErrorKind, OllamaChat
from .protocol import Reply

__all__ = ["DEFAULT_SYSTEM_PROMPT", "PlainCore"]

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord server. Answer briefly and clearly; "
    "use Markdown code blocks for code."
)


@final
class PlainCore:
    """Per-channel history sent to Ollama, errors answered, logged and counted (phase 1).

    Args:
        llm: the Ollama client; the core owns it and closes it in :meth:`aclose`.
        system_prompt: sent first in every conversation.
        max_messages: messages kept per channel (user and assistant turns); >= 2.

    Memory grows with the number of channels: nothing is ever evicted (the HistoryStore of
    the botperf-based core bounds it).
    """

    def __init__(
        self, llm: OllamaChat, *, system_prompt: str = DEFAULT_SYSTEM_PROMPT, max_messages: int = 20
    ) -> None:
        if max_messages < 2:
            raise ValueError(f"max_messages must be >= 2 (one exchange), got {max_messages}")
        self.llm = llm
        self.system_prompt = system_prompt
        self.max_messages = max_messages
        self.errors: Counter[LLMErrorKind] = Counter()
        """Failed LLM calls by kind."""
        self._history: dict[int, deque[dict[str, str]]] = {}

    def history(self, channel_id: int) -> list[dict[str, str]]:
        """The channel's remembered messages, oldest first (without the system prompt)."""
        return list(self._history.get(channel_id, ()))

    async def handle(self, channel_id: int, author: str, text: str) -> Reply:
        """Answer one message; an LLM failure becomes a :class:`Reply` explaining it."""
        try:
            result = await self.llm.chat(self._prompt(channel_id, text))
        except LLMError as error:
            return self._failed(channel_id, error)
        self._remember(channel_id, text, result)
        return Reply(result.text)

    async def stream(self, channel_id: int, author: str, text: str) -> AsyncGenerator[str, None]:
        """Answer one message in pieces; a failure ends the stream with its explanation."""
        async with self.llm.stream(self._prompt(channel_id, text)) as chat:
            try:
                async for piece in chat:
                    yield piece
            except LLMError as error:
                reply = self._failed(channel_id, error)
                yield ("\n\n" if chat.text else "") + reply.text
                return
        self._remember(channel_id, text, chat.result)

    async def reset(self, channel_id: int) -> None:
        """Forget the channel's history."""
        self._history.pop(channel_id, None)

    async def aclose(self) -> None:
        """Close the Ollama client."""
        await self.llm.aclose()

    def _prompt(self, channel_id: int, text: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system_prompt},
            *self._history.get(channel_id, ()),
            {"role": "user", "content": text},
        ]

    def _remember(self, channel_id: int, text: str, result: ChatResult) -> None:
        # Stored only once answered, so a failed turn leaves no question without its reply.
        history = self._history.setdefault(channel_id, deque(maxlen=self.max_messages))
        history.append({"role": "user", "content": text})
        history.append({"role": "assistant", "content": result.text})

    def _failed(self, channel_id: int, error: LLMError) -> Reply:
        self.errors[error.kind] += 1
        logger.warning("channel %s: LLM call failed: %s", channel_id, error)
        return Reply(error.user_message, error=error.kind)
