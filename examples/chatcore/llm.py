"""The bot's Ollama client: streaming chat, Ollama's own numbers, and one error type.

Built on the official ``ollama`` package's ``AsyncClient`` (httpx underneath, so it runs on
asyncio and trio). Every failure a chat can meet is turned into `LLMError`, whose
``kind`` says what happened and whose ``user_message`` is short enough to send to a Discord
channel. How the ``ollama`` client surfaces each failure (checked against ollama 0.6.3):

==============================  =========================================================
What happened                   What ``ollama.AsyncClient`` raises
==============================  =========================================================
Ollama down, streaming          ``httpx.ConnectError`` (not wrapped by the client)
Ollama down, not streaming      builtin ``ConnectionError`` (wrapped by the client)
Model missing                   ``ollama.ResponseError``, ``status_code`` 404
Server error                    ``ollama.ResponseError``, ``status_code`` 500 (or other)
``{"error": ...}`` mid-stream   ``ollama.ResponseError``, ``status_code`` -1
No answer in time               ``httpx.TimeoutException`` (``ReadTimeout``...)
Connection closed mid-stream    ``httpx.RemoteProtocolError`` (a ``TransportError``)
==============================  =========================================================

On trio, one wrinkle: when the ollama client's streaming generator raises on an
``{"error": ...}`` line (or is closed before the end), it leaves httpx's
``Response.aiter_lines()`` generator to the garbage collector, which trio reports with a
``ResourceWarning`` (ignored by default; asyncio finalizes such generators silently). When the
chat runs in a task that ends right after (the bot core's Deduplicator hosts each call in a
task of its own), the generators beneath it, in httpx and httpcore, are reported too. Nothing
leaks: the HTTP response itself is closed by the client's ``async with``. On success this module
reads the body to its end, so nothing is left to finalize.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, final

import anyio
import httpx
import ollama
import pydantic

__all__ = [
    "ChatResult",
    "ChatStream",
    "LLMError",
    "LLMErrorKind",
    "OllamaChat",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"
DEFAULT_TIMEOUT = 120.0


class LLMErrorKind(str, enum.Enum):
    """What went wrong talking to Ollama."""

    UNAVAILABLE = "unavailable"
    """Ollama could not be reached (not running, wrong ``OLLAMA_HOST``)."""
    MODEL_MISSING = "model_missing"
    """Ollama answered 404: the model is not pulled."""
    SERVER_ERROR = "server_error"
    """Ollama answered with another HTTP error, or something that is not Ollama's format."""
    TIMEOUT = "timeout"
    """The whole reply did not arrive within the timeout."""
    STREAM_ERROR = "stream_error"
    """Ollama sent an ``{"error": ...}`` line in the middle of a streamed reply."""
    DISCONNECTED = "disconnected"
    """The connection closed before the reply was complete."""
    TOO_LONG = "too_long"
    """The reply outgrew the pieces one shared stream may buffer (``max_reply_chunks``)."""


class LLMError(Exception):
    """Raised when a chat with Ollama fails; ``kind`` says how, ``user_message`` what to say.

    Attributes:
        kind: the category of failure.
        user_message: one sentence fit for the chat user (no internals, no stack).
        detail: what Ollama or the transport reported, for the logs.
        status_code: the HTTP status when Ollama answered with one, else ``None``.
    """

    def __init__(
        self,
        kind: LLMErrorKind,
        user_message: str,
        *,
        detail: str = "",
        status_code: int | None = None,
    ) -> None:
        super().__init__(f"{kind.value}: {detail or user_message}")
        self.kind = kind
        self.user_message = user_message
        self.detail = detail
        self.status_code = status_code


@dataclass(frozen=True)
class ChatResult:
    """One completed chat reply and what it cost.

    Wall-clock times are measured by this client in seconds; the ``*_duration`` fields are
    what Ollama itself reported, in nanoseconds (``None`` when it did not say).
    """

    text: str
    model: str
    latency: float
    """Seconds from sending the request to the end of the reply."""
    time_to_first_token: float | None
    """Seconds from sending the request to the first non-empty piece of text."""
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_duration: int | None = None
    eval_duration: int | None = None
    done_reason: str | None = None

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed as Ollama measured it: ``eval_count / eval_duration * 1e9``."""
        if not self.eval_count or not self.eval_duration:
            return None
        return self.eval_count / self.eval_duration * 1e9


@final
class OllamaChat:
    """Chat with one Ollama model, streaming, with every failure mapped to `LLMError`.

    Args:
        host: Ollama's URL; default ``OLLAMA_HOST`` from the environment, else
            ``http://127.0.0.1:11434``.
        model: model name; default ``OLLAMA_MODEL`` from the environment, else ``llama3.2``.
        timeout: seconds allowed for a whole reply (connecting included); must be > 0.
        options: Ollama model options (``temperature``, ``num_ctx``...), sent with each chat.

    The instance owns an HTTP connection pool: close it with `aclose` (or ``async with``).
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        model: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        self.model = model or os.environ.get("OLLAMA_MODEL") or DEFAULT_MODEL
        self.timeout = timeout
        self.options = dict(options) if options else None
        self._client = ollama.AsyncClient(host=self.host, timeout=timeout)

    def stream(self, messages: Sequence[Mapping[str, str]]) -> ChatStream:
        """Start a streamed chat; use the result with ``async with`` and ``async for``.

        Args:
            messages: the conversation, ``[{"role": ..., "content": ...}, ...]``, oldest first.

        Returns:
            A `ChatStream` yielding pieces of text; its ``result`` holds the
            `ChatResult` once the stream is exhausted.
        """
        return ChatStream(self, [dict(m) for m in messages])

    async def chat(self, messages: Sequence[Mapping[str, str]]) -> ChatResult:
        """Send ``messages`` and return the complete reply (streamed underneath).

        Raises:
            LLMError: on any failure (see `LLMErrorKind`).
        """
        async with self.stream(messages) as stream:
            async for _ in stream:
                pass
        return stream.result

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]  # ollama leaves it unannotated

    async def __aenter__(self) -> OllamaChat:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _error(self, error: BaseException) -> LLMError:
        """Translate what the ``ollama`` client or httpx raised into an `LLMError`."""
        if isinstance(error, ollama.ResponseError):
            status = error.status_code
            if status == 404:
                return LLMError(
                    LLMErrorKind.MODEL_MISSING,
                    f"The model '{self.model}' is not installed on the Ollama server "
                    f"(run `ollama pull {self.model}`).",
                    detail=error.error,
                    status_code=status,
                )
            if status == -1:
                return LLMError(
                    LLMErrorKind.STREAM_ERROR,
                    "The model stopped with an error in the middle of its reply; please try again.",
                    detail=error.error,
                )
            return LLMError(
                LLMErrorKind.SERVER_ERROR,
                f"The Ollama server failed (HTTP {status}); please try again later.",
                detail=error.error,
                status_code=status,
            )
        if isinstance(error, (TimeoutError, httpx.TimeoutException)):
            return LLMError(
                LLMErrorKind.TIMEOUT,
                f"The model took more than {self.timeout:g} s to answer; please try again.",
                detail=repr(error),
            )
        if isinstance(error, (ConnectionError, httpx.ConnectError)):
            return LLMError(
                LLMErrorKind.UNAVAILABLE,
                "I can't reach the language model right now (is Ollama running?).",
                detail=f"{self.host}: {error}",
            )
        if isinstance(error, httpx.TransportError):
            return LLMError(
                LLMErrorKind.DISCONNECTED,
                "The connection to the model broke off mid-reply; please try again.",
                detail=repr(error),
            )
        return LLMError(
            LLMErrorKind.SERVER_ERROR,
            "The Ollama server sent a reply I could not read; please try again later.",
            detail=repr(error),
        )


_TRANSLATED = (
    ollama.ResponseError,
    httpx.HTTPError,
    ConnectionError,
    TimeoutError,
    pydantic.ValidationError,
    ValueError,  # a line that is not JSON (json.JSONDecodeError)
)


@final
class ChatStream:
    """A streamed chat reply: an async iterator of text pieces and an async context manager.

    The whole stream, connecting included, must finish within the client's ``timeout``;
    the deadline is applied around each read, never across a ``yield``, so it is safe on
    both asyncio and trio. Leaving the ``async with`` block early closes the HTTP response.

    Raises:
        LLMError: from iteration, on any failure.
    """

    def __init__(self, chat: OllamaChat, messages: list[dict[str, str]]) -> None:
        self._chat = chat
        self._messages = messages
        self._parts: list[str] = []
        self._iterator: AsyncIterator[ollama.ChatResponse] | None = None
        self._started = 0.0
        self._deadline = 0.0
        self._first_token: float | None = None
        self._result: ChatResult | None = None
        self._closed = False

    @property
    def result(self) -> ChatResult:
        """The completed reply; only available once iteration has finished without error."""
        if self._result is None:
            raise RuntimeError("the stream has not finished yet; iterate it to the end first")
        return self._result

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP response if the stream was not read to the end.

        A closed stream (including one that failed) yields nothing more.
        """
        self._closed = True
        iterator, self._iterator = self._iterator, None
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        if self._result is not None or self._closed:
            raise StopAsyncIteration
        chat = self._chat
        try:
            if self._iterator is None:
                self._started = time.perf_counter()
                self._deadline = anyio.current_time() + chat.timeout
                with anyio.fail_after(chat.timeout):
                    self._iterator = await chat._client.chat(
                        model=chat.model, messages=self._messages, stream=True, options=chat.options
                    )
            while True:
                with anyio.fail_after(max(self._deadline - anyio.current_time(), 0.0)):
                    try:
                        part = await self._iterator.__anext__()
                    except StopAsyncIteration:
                        raise LLMError(
                            LLMErrorKind.DISCONNECTED,
                            "The connection to the model broke off mid-reply; please try again.",
                            detail="the stream ended without a final 'done' object",
                        ) from None
                piece = part.message.content or ""
                if part.done:
                    self._parts.append(piece)
                    self._finish(part)
                    # Read to the end of the body rather than closing early: the ollama
                    # client's generator then finishes cleanly (module docstring).
                    with anyio.fail_after(max(self._deadline - anyio.current_time(), 0.0)):
                        async for _ in self._iterator:
                            pass
                    self._iterator = None
                    self._closed = True
                    if piece:
                        return piece
                    raise StopAsyncIteration
                if piece:
                    if self._first_token is None:
                        self._first_token = time.perf_counter() - self._started
                    self._parts.append(piece)
                    return piece
        except LLMError:
            await self.aclose()
            raise
        except _TRANSLATED as error:
            await self.aclose()
            translated = chat._error(error)
            logger.debug("chat with %s at %s failed: %s", chat.model, chat.host, translated)
            raise translated from error

    def _finish(self, last: ollama.ChatResponse) -> None:
        self._result = ChatResult(
            text="".join(self._parts),
            model=last.model or self._chat.model,
            latency=time.perf_counter() - self._started,
            time_to_first_token=self._first_token,
            prompt_eval_count=last.prompt_eval_count,
            eval_count=last.eval_count,
            total_duration=last.total_duration,
            load_duration=last.load_duration,
            prompt_eval_duration=last.prompt_eval_duration,
            eval_duration=last.eval_duration,
            done_reason=last.done_reason,
        )
