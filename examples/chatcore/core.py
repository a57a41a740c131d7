"""The bot's core: per-channel history, one LLM call per burst of identical questions, metrics.

Every botperf primitive has one job here:

- a ``HistoryStore`` keeps each channel's last messages (LRU across channels, a token budget
  for the prompt) and turns them into Ollama's ``messages`` list; it trims "stable" (the
  prompt grows by appending, so Ollama's prompt cache is reused) and hands the messages it
  trims to a background summary, pinned to the prompt with ``set_summary``;
- a ``Deduplicator`` streams the Ollama reply once for all the messages that would send the
  same prompt at the same time (same model, same question up to case and spacing, same
  conversation so far): its shared stream hands every chunk to every one of them, a message
  arriving mid-reply first getting the chunks already produced;
- a ``RateLimiter`` (optional) refuses a user's messages beyond a rate, answering the first
  refused one with a short "slow down" notice and ignoring the rest;
- a ``FairLimiter`` holds the model's few parallel slots, shared round-robin between users,
  so one user's queue of questions does not delay everyone else's; a shared (deduplicated)
  call takes one slot, whatever the number of askers;
- ``timed`` times each call to Ollama into a ``LatencyRecorder`` and the metrics file, which
  also gets the wait for a slot, the time to first token and the time between tokens;
- a ``BatchMetricsWriter`` records a ``message_in``, an ``llm_call`` and a ``reply_out``
  event per message (see `BotCore` for their fields) and writes them to a JSON-lines
  file in batches, off the event loop; ``botperf report <file>`` reads it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import time
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack, aclosing
from types import TracebackType
from typing import Any, Literal, final

import anyio
import anyio.abc
from cachetools import LRUCache
from typing_extensions import Self

from botperf import (
    BatchMetricsWriter,
    Deduplicator,
    FairLimiter,
    HistoryStore,
    LatencyRecorder,
    Message,
    RateLimitedError,
    RateLimiter,
    StreamTooLongError,
    split_message,
    timed,
)

from .llm import ChatResult, LLMError, LLMErrorKind, OllamaChat
from .protocol import Reply

__all__ = [
    "DEFAULT_LLM_SLOTS",
    "DEFAULT_SYSTEM_PROMPT",
    "EMPTY_REPLY",
    "SUMMARY_AUTHOR",
    "SUMMARY_PREFIX",
    "SUMMARY_PROMPT",
    "BotCore",
    "normalize",
    "slow_down_notice",
    "summary_request",
]

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord server. Answer briefly and clearly; "
    "use Markdown code blocks for code."
)

DEFAULT_LLM_SLOTS = 2
"""Ollama calls run at once by default: what one Ollama server serves in parallel."""

EMPTY_REPLY = "(The model returned an empty reply.)"
"""Streamed in place of a reply with no visible text, which chat platforms refuse to post."""

SUMMARY_PROMPT = (
    "You keep the memory of a chat. Summarize the conversation you are given for the "
    "assistant who continues it: what the users asked, what was answered or decided, and "
    "what is still open. Plain sentences, no preamble."
)
"""The system prompt of a summary request (see `summary_request`)."""

SUMMARY_PREFIX = "Earlier in this conversation: "
"""How a pinned summary starts, so the model reads it as memory, not as an instruction."""

SUMMARY_AUTHOR = "(summaries)"
"""The `FairLimiter` key of summary calls: all of them together get one author's share."""

_TOLD_USERS = 10_000  # users remembered as told to slow down; a forgotten one is told again


def normalize(text: str) -> str:
    """The form of a text that deduplication compares: stripped, casefolded, one space per run."""
    return " ".join(text.split()).casefold()


def slow_down_notice(retry_after: float) -> str:
    """The one reply a rate-limited author gets: when to try again, in whole seconds (>= 1)."""
    return f"Slow down, try again in {max(math.ceil(retry_after), 1)} s."


def summary_request(
    previous: str | None, messages: Sequence[Message], *, words: int
) -> list[dict[str, str]]:
    """The ``messages`` of the chat request that summarizes trimmed ``messages``.

    The previous summary (if any) and the messages, as a transcript, come first; the
    instruction comes last, as the question the model answers.
    """
    lines = [f"{message.role}: {message.content}" for message in messages]
    if previous is not None:
        lines.insert(0, f"Summary so far: {previous.removeprefix(SUMMARY_PREFIX)}\n")
    return [
        {"role": "system", "content": SUMMARY_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
        {"role": "user", "content": f"Summarize the conversation above in at most {words} words."},
    ]


def _context_digest(messages: Sequence[dict[str, str]]) -> str:
    """A digest of a conversation (roles and normalized contents), for the deduplication key.

    The whole conversation counts, not only its last messages: the model's reply depends on
    all of it, so two channels may share a reply only if they sent the same prompt.
    """
    digest = hashlib.blake2b(digest_size=16)
    for message in messages:
        digest.update(f"{message['role']}\0{normalize(message['content'])}\1".encode())
    return digest.hexdigest()


def _ms(nanoseconds: int | None) -> float | None:
    return None if nanoseconds is None else nanoseconds / 1e6


@final
class _Turn:
    """One message's ticket into the shared stream, and how its turn ended.

    Only the first consumer's arguments reach the upstream, which marks ``executed``: so
    each message knows, once the stream has ended, whether its answer cost an LLM call or
    was shared. ``text`` and ``error`` are the `Reply` once the turn is
    over.
    """

    __slots__ = ("error", "executed", "limited", "text")

    def __init__(self) -> None:
        self.executed = False
        self.limited = False
        self.text = ""
        self.error: LLMErrorKind | None = None


@final
class _Backlog:
    """A channel's trimmed messages waiting for their summary, and whether a task works on it."""

    __slots__ = ("messages", "running")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.running = False


@final
class BotCore:
    """A chat bot's core on Ollama and botperf: the `ChatCore` of every mode.

    Start it once (``await core.start()`` or ``async with core``) and close it once
    (``await core.aclose()``), both from the same task: starting enters the metrics writer,
    whose flusher runs in an anyio task group, and the core's own task group, which runs
    the summaries; closing cancels the summaries still pending, writes every event still
    waiting, closes the metrics file, then closes the Ollama client.

    **History.** A message and its reply are stored together, once the reply has arrived: a
    failed turn leaves no trace, so the next message is not read in the context of a
    question that was never answered (the user can simply ask again). Messages still on
    their way when a channel is reset are stored after the reset. The prompt is the system
    prompt and as much of the channel's history as fits ``max_tokens``, then the new
    question, which comes on top of that budget.

    **Trimming and summaries.** With ``trim="stable"`` (the default) each prompt is the
    previous one plus the new messages, until they no longer fit ``max_tokens`` or
    ``max_messages``; then the oldest messages are trimmed down to half of both, so Ollama
    reuses its cache of the prompt's prefix on every turn but the trimming ones
    (``"sliding"`` drops the oldest messages on every turn once full). The messages
    trimmed are summarized in the background by the same model, and the summary is pinned
    after the system prompt (``HistoryStore.set_summary``), so the bot does not forget
    what the conversation was about. ``on_trim`` only queues the messages; one task per
    channel, in the core's task group, summarizes them with the previous summary (one
    summary in flight per channel: messages trimmed meanwhile wait for the next one); the
    call goes through a `Deduplicator` of its own (``summary_dedup``), so equal requests
    from several channels share one call.
    Summaries run ``llm_slots - 1`` at once at most (one with a single slot), so they
    leave replies a slot, and each takes a model slot like a reply, under the one
    `FairLimiter` key `SUMMARY_AUTHOR`, so they get one author's share of the slots; no
    reply ever awaits a summary. A failed summary leaves the previous one in place: it is
    logged, counted in `summary_errors` and recorded, and its messages are summarized with
    those of the next trim. Resetting a channel, or its eviction, drops its pending
    summary; `aclose` cancels those still running. A core that was never started makes
    no summaries.

    **Deduplication.** The key is the model, the normalized question (`normalize`)
    and a digest of the whole prompt before it. The reply is streamed through
    ``Deduplicator.stream()``: messages with equal keys that arrive while it streams share
    the one Ollama request, each getting every chunk in order (one arriving mid-reply first
    gets the chunks produced so far, at once), and each channel stores its own user's words
    with the reply. A message whose consumer stops early leaves the others streaming; once
    every one has left, the Ollama request is closed. Replies are not cached beyond the
    stream (no ``ttl``).

    **Admission.** With a ``rate_limiter``, each message first passes
    ``rate_limiter.check(author)``. A refused message gets no LLM call and no history: the
    first one refused since the author's last admitted message is answered with one short
    notice ("Slow down, try again in N s."), the next ones with nothing at all (their stream
    yields no piece, so a front end sends nothing), so a flood costs one reply. Every call
    made to Ollama then waits for one of ``llm_slots`` slots of a `FairLimiter`, keyed by
    the author whose message started it: slots go round-robin between authors, so one
    author's queue delays another's call by one slot at most. The slot is taken inside the
    shared upstream, so a call shared by many askers holds one slot.

    **Events** (``error`` is a bool, so ``botperf report`` counts failures; ``error_kind``
    an `LLMErrorKind` value, ``"cancelled"``, or ``None``):

    - ``message_in``: ``channel``, ``author`` (a keyed hash: it tells users apart within
      one run and cannot be turned back into a name), ``chars``.
    - ``message_limited``, for a message the rate limiter refused (it records nothing
      else): ``channel``, ``author``, ``retry_after_s``, ``notified`` (whether it got the
      notice).
    - ``llm_call``, one per message: ``channel``, ``latency_ms`` (the call's duration, or
      for a shared call this message's wait for the end of the stream), ``deduplicated``
      (whether it shared another message's call), ``error``, ``error_kind``, and what
      Ollama reported for the call: ``ttft_ms``, ``prompt_eval_count``, ``eval_count``,
      ``total_duration_ms``, ``load_duration_ms``, ``eval_duration_ms``, ``tokens_per_s``.
      Those are ``None`` on deduplicated events, so summing them over the file gives what
      Ollama really spent. The call made records its event when it ends, even if the
      message that started it has stopped consuming (the call was made); a call closed
      because every consumer left records ``error_kind`` ``"cancelled"``; one cancelled
      while it waited for a slot was never made and records nothing.
    - ``ollama.chat``, from ``timed``: ``duration_ms``, ``error``, one per call made.
    - ``reply_out``: ``channel``, ``chars``, ``parts`` (chat messages it takes),
      ``latency_ms`` (from the message to the end of its reply), ``error``, ``error_kind``.
      A message whose consumer stopped early records neither this nor, if it shared
      another's call, ``llm_call``.
    - ``summary``, one per summary call: ``channel``, ``messages`` (how many it
      summarized), ``latency_ms``, ``error``, ``error_kind``, ``prompt_eval_count``,
      ``chars`` (of the summary pinned, 0 on failure).

    The `latency` recorder also gets, per call made, ``llm.slot`` (the wait for a slot),
    ``llm.first_token`` (from the request to the first piece of the reply) and, per later
    piece, ``llm.token`` (the time since the previous piece: Ollama streams a token a
    piece, so its ``count`` over its ``sum`` is tokens per second).

    Durations measured per message (``llm.wait``, ``reply``, and the ``latency_ms`` fields
    above) run until this message's consumer has read the end of the stream, so they
    include the consumer's own time between chunks (a Discord edit); the upstream's
    ``ollama.chat`` is not slowed by it.

    Args:
        llm: The Ollama client; the core owns it and closes it in `aclose`.
        metrics_path: The JSON-lines file events are appended to.
        system_prompt: Sent first in every conversation.
        max_channels: Channels whose history is kept; the least recently used is dropped.
        max_messages: Messages kept per channel (questions and replies); at least 2.
        max_tokens: Token budget of the system prompt plus history sent with a question
            (estimated at 4 characters per token); the oldest messages are left out first.
        metrics_batch: Events written per disk write, at most.
        metrics_delay: Seconds an event waits at most before it is written.
        metrics_rotate_bytes: Rotate the metrics file before it would grow past this many
            bytes (five old files are kept); ``None`` never rotates.
        max_reply_chunks: Streamed pieces one reply may have; a longer one (a runaway
            model) is cut off and answered with a short explanation.
        rate_limiter: Admits each author's messages (the key is ``author``); ``None``
            admits every message.
        llm_slots: Ollama calls run at once, at most (the `FairLimiter`'s slots).
        max_length: Characters per chat message (Discord 2,000, Telegram 4,096), for the
            ``parts`` of ``reply_out``.
        trim: How the history trims a conversation: ``"stable"`` (keep the prompt's
            prefix, for Ollama's prompt cache) or ``"sliding"`` (the newest messages).
        summaries: Whether to summarize trimmed messages and pin the summary.

    Raises:
        ValueError: If ``max_messages`` is below 2, ``max_length`` below 20, or another
            option is out of its range (botperf's `InvalidOptionError` is a ``ValueError``).
    """

    def __init__(
        self,
        llm: OllamaChat,
        *,
        metrics_path: str | os.PathLike[str],
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_channels: int = 1000,
        max_messages: int = 20,
        max_tokens: int = 2000,
        metrics_batch: int = 50,
        metrics_delay: float = 5.0,
        metrics_rotate_bytes: int | None = 64 * 2**20,
        max_reply_chunks: int = 10_000,
        rate_limiter: RateLimiter | None = None,
        llm_slots: int = DEFAULT_LLM_SLOTS,
        max_length: int = 2000,
        trim: Literal["sliding", "stable"] = "stable",
        summaries: bool = True,
    ) -> None:
        if max_messages < 2:
            raise ValueError(f"max_messages must be >= 2 (one exchange), got {max_messages}")
        if max_length < 20:
            raise ValueError(f"max_length must be >= 20 characters, got {max_length}")
        self.llm = llm
        self.history: HistoryStore[int] = HistoryStore(
            max_channels=max_channels,
            max_messages=max_messages,
            max_tokens=max_tokens,
            system_prompt=system_prompt,
            trim=trim,
            on_trim=self._trimmed if summaries else None,
            on_evict=self._evicted if summaries else None,
        )
        """Each channel's conversation."""
        self.dedup = Deduplicator(max_chunks=max_reply_chunks)
        """Runs one Ollama call per burst of identical prompts. A reply streamed in more
        than ``max_reply_chunks`` pieces (a runaway model) is cut off and answered with a
        short explanation, like any other failure."""
        self.metrics = BatchMetricsWriter(
            metrics_path,
            max_batch=metrics_batch,
            max_delay=metrics_delay,
            rotate_bytes=metrics_rotate_bytes,
        )
        """The metric events, batched to ``metrics_path``."""
        self.summary_dedup = Deduplicator()
        """Runs one call for equal summary requests (the same previous summary and trimmed
        messages, whatever the channel), as ``dedup`` does for replies; an instance of its
        own, so that ``dedup.stats`` counts replies only."""
        self.rate_limiter = rate_limiter
        """Admits each author's messages, or ``None``."""
        self.slots = FairLimiter(llm_slots)
        """The Ollama calls running at once, shared fairly between the authors who start them."""
        self.latency = LatencyRecorder()
        """Durations of ``ollama.chat`` (each call made), ``llm.wait`` (each message's wait
        for its answer, shared or not), ``reply`` (each message, from arrival to reply), and
        per call made ``llm.slot``, ``llm.first_token`` and ``llm.token`` (see above)."""
        self.errors: Counter[LLMErrorKind] = Counter()
        """Messages answered with a failure, by kind."""
        self.summaries_made = 0
        """Summaries pinned to a channel's prompt."""
        self.summary_errors = 0
        """Summary calls that failed (each logged; the previous summary stayed)."""
        self._max_length = max_length
        # A summary's size: a tenth of the budget, in words (4 characters a token, about 5
        # a word) and, as a bound on what the model returns, in characters.
        self._summary_words = max(max_tokens * 4 // 50, 10)
        self._summary_chars = max(max_tokens * 4 // 10, 80)
        self._backlogs: dict[int, _Backlog] = {}
        self._max_backlog = 4 * max_messages
        self._summary_tasks = 0
        # Summaries leave at least one model slot to replies (unless there is only one).
        self._summary_limiter = anyio.CapacityLimiter(max(llm_slots - 1, 1))
        self._group: anyio.abc.TaskGroup | None = None
        self._author_key = secrets.token_bytes(16)
        # Authors told to slow down since their last admitted message (an LRU set).
        self._told: LRUCache[str, None] = LRUCache(maxsize=_TOLD_USERS)
        self._stack: AsyncExitStack | None = None
        self._closed = False

    async def start(self) -> None:
        """Start writing metrics in the background. Await once, in the task that closes.

        Raises:
            RuntimeError: If the core was already started or closed.
        """
        if self._stack is not None or self._closed:
            raise RuntimeError("a BotCore is started once, before it is closed")
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.metrics)
            # Entered last, left first: the summaries stop before the metrics file closes.
            self._group = await stack.enter_async_context(anyio.create_task_group())
            self._stack = stack.pop_all()

    async def aclose(self) -> None:
        """Cancel pending summaries, write the waiting events, close the file and the client.

        Idempotent. A core closed without having been started still writes its events.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._stack is not None:
                if self._group is not None:
                    self._group.cancel_scope.cancel()
                await self._stack.aclose()
            else:
                async with self.metrics:  # entering and leaving writes what waits
                    pass
        finally:
            self._backlogs.clear()
            await self.llm.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def handle(self, channel_id: int, author: str, text: str) -> Reply:
        """Answer ``text`` said by ``author`` in ``channel_id``, remembering the exchange.

        `stream`, read to its end. An LLM failure becomes a
        `Reply` with a short explanation; it is logged (once per call
        made, however many messages shared it) and counted in `errors` (once per
        message), and the channel's history is left as it was.
        """
        turn = _Turn()
        async with aclosing(self._turn(channel_id, author, text, turn)) as pieces:
            async for _ in pieces:
                pass
        return Reply(turn.text, error=turn.error, limited=turn.limited)

    def stream(self, channel_id: int, author: str, text: str) -> AsyncGenerator[str, None]:
        """Answer ``text`` as `handle` does, yielding the reply as the model streams it.

        Identical concurrent questions share one streamed Ollama request (see
        *Deduplication* above); a message arriving mid-reply gets the pieces already
        produced at once, then the live ones. An LLM failure ends the stream with one
        piece explaining it (after a blank line if part of the reply came first); it is
        logged and counted as in `handle`. A reply with no visible text streams
        `EMPTY_REPLY` after it. The exchange is stored once the whole reply has been read.
        A message the rate limiter refuses streams its notice, or nothing at all when its
        author was told already: a stream that yields nothing means there is nothing to
        send. Close the generator (``contextlib.aclosing``) to stop early: the other
        messages sharing the reply are not affected.
        """
        return self._turn(channel_id, author, text, _Turn())

    @property
    def summaries_running(self) -> int:
        """Summary tasks running now: one per channel at most, plus those of channels reset
        or evicted meanwhile, whose summary will not be pinned."""
        return self._summary_tasks

    async def reset(self, channel_id: int) -> None:
        """Forget the channel's history, its summary, and the summary it was waiting for."""
        self.history.clear(channel_id)
        self._backlogs.pop(channel_id, None)

    def _trimmed(self, channel_id: int, messages: tuple[Message, ...]) -> None:
        """``on_trim``: queue the messages for the channel's summary task, starting it if idle.

        It runs inside the ``as_messages()`` or ``append()`` that trimmed: it only queues.
        """
        group = self._group
        if group is None or self._closed:
            logger.debug("channel %s: %d messages trimmed, no summary", channel_id, len(messages))
            return
        backlog = self._backlogs.get(channel_id)
        if backlog is None:
            backlog = self._backlogs[channel_id] = _Backlog()
        backlog.messages.extend(messages)
        self._bound(backlog)
        if not backlog.running:
            backlog.running = True
            self._summary_tasks += 1
            group.start_soon(self._summarize, channel_id, backlog)

    def _bound(self, backlog: _Backlog) -> None:
        """Keep a backlog's newest messages only: summaries that keep failing must not
        pile up messages without bound."""
        del backlog.messages[: -self._max_backlog]

    def _evicted(self, channel_id: int, messages: tuple[Message, ...]) -> None:
        """``on_evict``: the channel is gone, and its pending summary with it."""
        self._backlogs.pop(channel_id, None)

    async def _summarize(self, channel_id: int, backlog: _Backlog) -> None:
        """The channel's summary task: summarize its backlog until it is empty, then end.

        The summary is pinned only if the channel still has this backlog: a reset or an
        eviction meanwhile makes the result stale. Every failure is contained here (logged
        and counted), since an error escaping a task would cancel the core's task group.
        """
        try:
            while backlog.messages and self._backlogs.get(channel_id) is backlog:
                messages = tuple(backlog.messages)
                backlog.messages.clear()
                text = await self._summary(channel_id, messages)
                if text is None:
                    backlog.messages[:0] = messages  # summarized with the next trim's
                    self._bound(backlog)
                    return
                if self._backlogs.get(channel_id) is backlog:
                    self.history.set_summary(channel_id, text)
                    self.summaries_made += 1
        finally:
            backlog.running = False
            self._summary_tasks -= 1
            if not backlog.messages and self._backlogs.get(channel_id) is backlog:
                del self._backlogs[channel_id]

    async def _summary_call(self, request: list[dict[str, str]], timer: timed) -> ChatResult:
        """A summary's chat call, in a fair slot (in the summary Deduplicator's task)."""
        async with self._summary_limiter, self.slots.slot(SUMMARY_AUTHOR):
            with timer:
                return await self.llm.chat(request)

    async def _summary(self, channel_id: int, messages: tuple[Message, ...]) -> str | None:
        """One summary call, in a fair slot: the text to pin, or None if it failed."""
        request = summary_request(
            self.history.get_summary(channel_id), messages, words=self._summary_words
        )
        timer = timed("llm.summary", recorder=self.latency)
        key = (self.llm.model, _context_digest(request))
        result: ChatResult | None = None
        failure: LLMError | None = None
        try:
            result = await self.summary_dedup.run(key, self._summary_call, request, timer)
            if not result.text.strip():
                failure = LLMError(LLMErrorKind.SERVER_ERROR, "", detail="empty summary")
        except LLMError as error:
            failure = error
        except Exception as error:  # a bug must not cancel the core's task group
            logger.exception("channel %s: summary failed", channel_id)
            failure = LLMError(LLMErrorKind.SERVER_ERROR, "", detail=repr(error))
        text = None
        if failure is None and result is not None:
            words = " ".join(result.text.split())
            if len(words) > self._summary_chars:
                words = words[: self._summary_chars].rsplit(" ", 1)[0] + " ..."
            text = SUMMARY_PREFIX + words
        else:
            self.summary_errors += 1
            logger.warning(
                "channel %s: summary failed, the previous one stays: %s", channel_id, failure
            )
        self.record(
            "summary",
            channel=channel_id,
            messages=len(messages),
            latency_ms=(timer.elapsed or 0.0) * 1e3,
            error=failure is not None,
            error_kind=None if failure is None else failure.kind.value,
            prompt_eval_count=None if result is None else result.prompt_eval_count,
            chars=0 if text is None else len(text),
        )
        return text

    async def _turn(
        self, channel_id: int, author: str, text: str, turn: _Turn
    ) -> AsyncGenerator[str, None]:
        """One message's turn, the code path of both `handle` and `stream`."""
        self.record(
            "message_in", channel=channel_id, author=self._pseudonym(author), chars=len(text)
        )
        if self.rate_limiter is not None:
            try:
                self.rate_limiter.check(author)
            except RateLimitedError as refused:
                turn.limited = True
                turn.text = self._refuse(channel_id, author, refused.retry_after or 0.0)
                if turn.text:
                    yield turn.text
                return
            self._told.pop(author, None)
        context = self.history.as_messages(channel_id)
        key = (self.llm.model, normalize(text), _context_digest(context))
        messages = [*context, {"role": "user", "content": text}]
        chunks = self.dedup.stream(key, self._ask, turn, channel_id, author, messages)
        parts: list[str] = []
        failure: LLMError | None = None
        reply_timer = timed("reply", recorder=self.latency)
        wait_timer = timed("llm.wait", recorder=self.latency)
        with reply_timer:
            try:
                with wait_timer:
                    async with aclosing(chunks):
                        async for piece in chunks:
                            parts.append(piece)
                            yield piece
            except LLMError as error:
                failure = error
            except StreamTooLongError as error:
                failure = LLMError(
                    LLMErrorKind.TOO_LONG,
                    "The answer grew too long to send; please ask for a shorter one.",
                    detail=str(error),
                )
                logger.warning("channel %s: reply cut off: %s", channel_id, error)
        if not turn.executed:
            self._record_llm_call(channel_id, wait_timer.elapsed, deduplicated=True, error=failure)
        if failure is None:
            turn.text = "".join(parts)
            self.history.append(channel_id, "user", text, author=author)
            self.history.append(channel_id, "assistant", turn.text)
            if not turn.text.strip():
                turn.text = EMPTY_REPLY
                yield EMPTY_REPLY
        else:
            self.errors[failure.kind] += 1
            turn.text, turn.error = failure.user_message, failure.kind
        self.record(
            "reply_out",
            channel=channel_id,
            chars=len(turn.text),
            parts=len(split_message(turn.text, max_length=self._max_length)),
            latency_ms=(reply_timer.elapsed or 0.0) * 1e3,
            error=failure is not None,
            error_kind=None if turn.error is None else turn.error.value,
        )
        if failure is not None:
            # Shown after the part of the reply already streamed, if any, not glued to it.
            yield f"\n\n{turn.text}" if parts else turn.text

    def _refuse(self, channel_id: int, author: str, retry_after: float) -> str:
        """Record a refused message; the notice to send, or ``""`` if the author was told."""
        notify = author not in self._told
        if notify:
            self._told[author] = None
        self.record(
            "message_limited",
            channel=channel_id,
            author=self._pseudonym(author),
            retry_after_s=retry_after,
            notified=notify,
        )
        return slow_down_notice(retry_after) if notify else ""

    async def _ask(
        self, turn: _Turn, channel_id: int, author: str, messages: list[dict[str, str]]
    ) -> AsyncGenerator[str, None]:
        """The shared upstream: one streamed call to Ollama in a fair slot, timed and recorded.

        It runs in the Deduplicator's hosted task, never in a consumer's, so its timers and
        its ``llm_call`` event measure the call itself, whatever the consumers do; and the
        call holds one slot however many messages share it.
        """
        turn.executed = True
        recorder = self.latency
        asked = time.perf_counter()
        async with self.slots.slot(author):
            recorder.observe("llm.slot", time.perf_counter() - asked)
            # metrics=self rather than the writer: see record(), for a call outliving aclose().
            timer = timed("ollama.chat", recorder=recorder, metrics=self)
            chat = self.llm.stream(messages)
            try:
                with timer:
                    async with chat:
                        name, last = "llm.first_token", time.perf_counter()
                        async for piece in chat:
                            now = time.perf_counter()
                            recorder.observe(name, now - last)
                            name, last = "llm.token", now
                            yield piece
            except LLMError as error:
                logger.warning("channel %s: LLM call failed: %s", channel_id, error)
                self._record_llm_call(channel_id, timer.elapsed, deduplicated=False, error=error)
                raise
            except BaseException:
                # Every consumer left (the upstream is cancelled, or closed at a yield), or
                # the bot is shutting down: the call was made all the same.
                self._record_llm_call(channel_id, timer.elapsed, deduplicated=False, cancelled=True)
                raise
            self._record_llm_call(channel_id, timer.elapsed, deduplicated=False, result=chat.result)

    def _record_llm_call(
        self,
        channel_id: int,
        seconds: float | None,
        *,
        deduplicated: bool,
        result: ChatResult | None = None,
        error: LLMError | None = None,
        cancelled: bool = False,
    ) -> None:
        error_kind = "cancelled" if cancelled else None if error is None else error.kind.value
        self.record(
            "llm_call",
            channel=channel_id,
            latency_ms=(seconds or 0.0) * 1e3,
            deduplicated=deduplicated,
            error=error_kind is not None,
            error_kind=error_kind,
            ttft_ms=None
            if result is None or result.time_to_first_token is None
            else result.time_to_first_token * 1e3,
            prompt_eval_count=None if result is None else result.prompt_eval_count,
            eval_count=None if result is None else result.eval_count,
            total_duration_ms=None if result is None else _ms(result.total_duration),
            load_duration_ms=None if result is None else _ms(result.load_duration),
            eval_duration_ms=None if result is None else _ms(result.eval_duration),
            tokens_per_s=None if result is None else result.tokens_per_second,
        )

    def record(self, event: str, /, **fields: Any) -> None:
        """Record a metric event in `metrics`; O(1), no I/O.

        Once the core is closed, the event is dropped with a debug log line instead: a reply
        still on its way at shutdown must not fail for want of a metrics file.
        """
        if self._closed:
            logger.debug("%s event after the core closed, not recorded: %s", event, fields)
            return
        self.metrics.record(event, **fields)

    def _pseudonym(self, author: str) -> str:
        return hashlib.blake2b(author.encode(), key=self._author_key, digest_size=6).hexdigest()
