"""What every history store shares, in memory or on Redis: values, options and rules.

`HistoryStore` and `botperf.redis.RedisHistoryStore` check their options, their
messages and their token budget with the same code, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, NamedTuple, TypeAlias, final

from ._exceptions import BotperfTypeError, BotperfValueError, InvalidOptionError
from ._options import check_int_option

__all__ = [
    "ANSWER_ROLES",
    "HistoryStats",
    "Message",
    "StoreOptions",
    "TrimMode",
    "approximate_tokens",
    "check_message",
    "check_summary",
    "new_tuple",
    "unhashable_channel",
]

#: How a store trims a channel's window: see `StoreOptions.first_kept()`.
TrimMode: TypeAlias = Literal["sliding", "stable"]

#: Roles a window never starts on (unless it is the newest message alone): an answer
#: sent without its question would open the prompt.
ANSWER_ROLES = frozenset({"assistant", "tool"})


@final
class Message(NamedTuple):
    """One chat message: an immutable ``(role, content, author)`` value.

    Attributes:
        role: Who speaks, as the LLM API names it: ``"user"``, ``"assistant"``, ...
        content: The text.
        author: Optionally, who wrote it (a user name or id as text); kept in the
            history and in dumps, but not sent by ``HistoryStore.as_messages()``.
    """

    role: str
    content: str
    author: str | None = None


@final
@dataclass(frozen=True, slots=True)
class HistoryStats:
    """A snapshot of a ``HistoryStore``'s counters, from ``HistoryStore.stats``.

    Attributes:
        hits: Reads (``get()``, ``as_messages()``) of a channel the store held.
        misses: Reads of a channel it did not hold.
        evictions: Channels dropped because the store held ``max_channels`` of them.
        evict_errors: Calls of the ``on_evict`` callback that raised (each was logged).
        over_budget: Prompts ``as_messages()`` returned over ``max_tokens`` because the
            system prompt, the summary and the newest message alone exceed it.
        channels: Channels held now.
        messages: Messages held now, over all channels.
        trim_errors: Calls of the ``on_trim`` callback that raised (each was logged).
            Last, with a default, so that code building a snapshot by position or
            without it keeps working.
    """

    hits: int
    misses: int
    evictions: int
    evict_errors: int
    over_budget: int
    channels: int
    messages: int
    trim_errors: int = 0


def approximate_tokens(text: str) -> int:
    """Estimate the tokens of ``text`` as ``ceil(len(text) / 4)``: the default token counter.

    Four characters per token is the usual rule of thumb for English text with
    OpenAI- and Llama-style tokenizers. It is cheap, but only an estimate: leave
    headroom in ``max_tokens``, or pass the model's own tokenizer as ``count_tokens``.

    Args:
        text: The text to measure.

    Returns:
        The estimated number of tokens (0 for an empty string).
    """
    return (len(text) + 3) // 4


# tuple.__new__ builds the same value as Message(...) without namedtuple's Python-level
# __new__: both stores make one per message appended or read, on their hot paths.
new_tuple = tuple.__new__


def argument_type_error(name: str, value: object, expected: str) -> TypeError:
    """The `TypeError` for a history argument (``name``) of the wrong type."""
    return BotperfTypeError(
        f"{name} must be {expected}, got {value!r} ({type(value).__name__})",
        name=name,
        value=value,
    )


def argument_value_error(name: str, value: object, expected: str) -> ValueError:
    """The `ValueError` for a history argument (``name``) of the right type but unusable."""
    return BotperfValueError(f"{name} must be {expected}, got {value!r}", name=name, value=value)


def check_message(role: object, content: object, author: object) -> Message:
    """Return the message of an ``append()``'s fields, once they are checked.

    Raises:
        TypeError: If ``role``, ``content`` or ``author`` is not a str (or
            ``author`` not None).
        ValueError: If ``role`` is empty.
    """
    if not isinstance(role, str):
        raise argument_type_error("role", role, "a non-empty str such as 'user'")
    if not role:
        raise argument_value_error("role", role, "a non-empty str such as 'user'")
    if not isinstance(content, str):
        raise argument_type_error("content", content, "a str")
    if author is not None and not isinstance(author, str):
        raise argument_type_error("author", author, "a str or None")
    return new_tuple(Message, (role, content, author))


def check_summary(summary: object) -> str | None:
    """Return a ``set_summary()`` text once it is checked to be a str or None.

    Raises:
        TypeError: If it is neither.
    """
    if summary is not None and not isinstance(summary, str):
        raise argument_type_error("summary", summary, "a str, or None to remove the summary")
    return summary


def unhashable_channel(channel: object) -> TypeError:
    """Return the error for a channel key that is not hashable."""
    return argument_type_error("channel", channel, "a hashable key such as an int or str")


@final
@dataclass(frozen=True, slots=True)
class StoreOptions:
    """The checked options of a history store, built by `StoreOptions.check()`.

    Attributes:
        max_channels: Channels held at most.
        max_messages: Messages kept per channel.
        max_tokens: The prompt's token budget, or None for none.
        count_tokens: The token counter (`approximate_tokens` by default).
        system_prompt: The text sent first by ``as_messages()``, or None.
        system_tokens: The system prompt's tokens plus ``message_overhead`` (0 without
            a budget or a system prompt).
        trim: ``"sliding"`` or ``"stable"``.
        stable_fill: The share of the limits a ``"stable"`` trim goes down to.
        message_overhead: Tokens counted in the budget for each message of the prompt.
        fill_tokens: ``stable_fill`` of ``max_tokens`` (None without a budget).
        fill_messages: ``stable_fill`` of ``max_messages``, at least 1.
        tracks: Whether the store keeps each channel's window start: in ``"stable"``
            mode, or with an ``on_trim`` callback to tell what left the window.
    """

    max_channels: int
    max_messages: int
    max_tokens: int | None
    count_tokens: Callable[[str], int]
    system_prompt: str | None
    system_tokens: int
    trim: TrimMode
    stable_fill: float
    message_overhead: int
    fill_tokens: int | None
    fill_messages: int
    tracks: bool

    @classmethod
    def check(
        cls,
        owner: str,
        *,
        max_channels: object,
        max_messages: object,
        max_tokens: object,
        count_tokens: object,
        system_prompt: object,
        on_evict: object,
        trim: object = "sliding",
        stable_fill: object = 0.5,
        message_overhead: object = 0,
        on_trim: object = None,
    ) -> StoreOptions:
        """Check a store's options and count the system prompt's tokens.

        Raises:
            InvalidOptionError: If an option is of the wrong type or out of range, or the
                system prompt alone fills ``max_tokens``.
            ValueError: If ``count_tokens`` returns something other than a
                non-negative int for the system prompt.
        """
        checked_channels = check_int_option(owner, "max_channels", max_channels, minimum=1)
        checked_messages = check_int_option(owner, "max_messages", max_messages, minimum=1)
        budget = (
            None
            if max_tokens is None
            else check_int_option(owner, "max_tokens", max_tokens, minimum=1)
        )
        if count_tokens is not None and not callable(count_tokens):
            raise InvalidOptionError(
                owner, "count_tokens", count_tokens, "a callable str -> int, or None"
            )
        for name, callback in (("on_evict", on_evict), ("on_trim", on_trim)):
            if callback is not None and not callable(callback):
                raise InvalidOptionError(
                    owner, name, callback, "a callable (channel, messages) -> None, or None"
                )
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InvalidOptionError(owner, "system_prompt", system_prompt, "a str or None")
        if trim != "sliding" and trim != "stable":
            raise InvalidOptionError(owner, "trim", trim, "'sliding' or 'stable'")
        if (
            isinstance(stable_fill, bool)
            or not isinstance(stable_fill, (int, float))
            or not 0 < stable_fill < 1
        ):
            raise InvalidOptionError(
                owner, "stable_fill", stable_fill, "a number above 0 and below 1, such as 0.5"
            )
        overhead = check_int_option(owner, "message_overhead", message_overhead, minimum=0)
        counter: Callable[[str], int] = approximate_tokens if count_tokens is None else count_tokens
        system_tokens = 0
        if system_prompt is not None and budget is not None:
            system_tokens = _checked_count(counter, "system_prompt", system_prompt) + overhead
            if system_tokens >= budget:
                raise InvalidOptionError(
                    owner,
                    "max_tokens",
                    max_tokens,
                    f"more than the system prompt's {system_tokens} tokens, "
                    "to leave room for messages",
                )
        fill = float(stable_fill)
        return cls(
            max_channels=checked_channels,
            max_messages=checked_messages,
            max_tokens=budget,
            count_tokens=counter,
            system_prompt=system_prompt,
            system_tokens=system_tokens,
            trim=trim,
            stable_fill=fill,
            message_overhead=overhead,
            fill_tokens=None if budget is None else math.floor(fill * budget),
            fill_messages=max(1, math.floor(fill * checked_messages)),
            tracks=trim == "stable" or on_trim is not None,
        )

    def count(self, what: str, text: str) -> int:
        """Return ``count_tokens(text)``, checked to be a non-negative int.

        Raises:
            ValueError: If it is not; ``what`` names the text counted.
        """
        return _checked_count(self.count_tokens, what, text)

    def prompt_start(self, summary: str | None = None) -> list[dict[str, str]]:
        """Return a new prompt holding the system prompt and the summary, if any."""
        prompt = [] if self.system_prompt is None else [_system(self.system_prompt)]
        if summary is not None:
            prompt.append(_system(summary))
        return prompt

    def first_kept(
        self,
        messages: Sequence[Sequence[Any]],
        counts: Sequence[int] | None,
        start: int = 0,
        summary_tokens: int | None = None,
    ) -> tuple[int, bool]:
        """Return the index of a channel's oldest message in the prompt, and if it is over budget.

        The one rule of both stores. ``messages`` are the channel's messages oldest
        first (each with its role first), ``counts`` their tokens (None without a
        budget), ``summary_tokens`` those of the channel's summary (None for no
        summary). ``start`` is the window's state: the index of its first message as the
        last prompt left it, or -1 if messages of that window have since dropped off
        ``max_messages``. Messages before it never come back, even if a shorter summary
        leaves room for them (they went to ``on_trim``); ``"sliding"`` stores that do
        not track the window pass 0, their window being the newest messages that fit.

        The budget counts the system prompt, the summary, and each message's tokens
        plus ``message_overhead``. ``"sliding"`` keeps the longest run of newest
        messages that fits. ``"stable"`` keeps the window from ``start`` while it fits
        (and has lost nothing to ``max_messages``), else trims it to the longest run
        of newest messages within ``stable_fill`` of both limits. Either way the window
        then starts on its oldest message that is not an answer (`ANSWER_ROLES`), and
        the newest message is always kept: the result is then over budget if it alone
        does not fit. O(messages in the window), reading ``counts`` newest first.
        """
        length = len(messages)
        floor = start if start > 0 else 0
        budget = self.max_tokens
        overhead = self.message_overhead
        reserved = self.system_tokens
        if summary_tokens is not None and budget is not None:
            reserved += summary_tokens + overhead
        # The first pass inlined: as_messages() runs it on every prompt.
        first = max(floor, length - self.max_messages)
        if budget is not None and counts is not None:
            remaining = budget - reserved
            index = length
            newest_first = (
                reversed(counts) if first == 0 else islice(reversed(counts), length - first)
            )
            for count in newest_first:
                remaining -= count + overhead
                if remaining < 0:
                    break
                index -= 1
            first = index if index < length else length - 1
        if self.trim == "stable" and (start < 0 or first > floor):
            first = _newest_within(
                counts, length, floor, self.fill_tokens, self.fill_messages, reserved, overhead
            )
        last = length - 1
        while first < last and messages[first][0] in ANSWER_ROLES:
            first += 1
        over_budget = (
            first == last
            and counts is not None
            and budget is not None
            and reserved + counts[last] + overhead > budget
        )
        return first, over_budget


def _newest_within(
    counts: Sequence[int] | None,
    length: int,
    floor: int,
    tokens: int | None,
    limit: int,
    reserved: int,
    overhead: int,
) -> int:
    """Index of the oldest message from ``floor`` on within both limits, the newest kept."""
    first = max(floor, length - limit)
    if tokens is not None and counts is not None:
        remaining = tokens - reserved
        index = length
        # Without a floor, the budget alone stops the walk: no islice to build.
        newest_first = reversed(counts) if first == 0 else islice(reversed(counts), length - first)
        for count in newest_first:
            remaining -= count + overhead
            if remaining < 0:
                break
            index -= 1
        first = index
    return min(first, length - 1)


def _system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def _checked_count(count_tokens: Callable[[str], int], what: str, text: str) -> int:
    count = count_tokens(text)
    if type(count) is not int or count < 0:
        raise argument_value_error(f"count_tokens({what})", count, "a non-negative int")
    return count
