"""What every history store shares, in memory or on Redis: values, options and rules.

`HistoryStore` and `botperf.redis.RedisHistoryStore` check their options, their
messages and their token budget with the same code, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple, final

from ._exceptions import BotperfTypeError, BotperfValueError, InvalidOptionError
from ._options import check_int_option

__all__ = [
    "HistoryStats",
    "Message",
    "StoreOptions",
    "approximate_tokens",
    "check_message",
    "unhashable_channel",
]


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
            system prompt and the newest message alone exceed it.
        channels: Channels held now.
        messages: Messages held now, over all channels.
    """

    hits: int
    misses: int
    evictions: int
    evict_errors: int
    over_budget: int
    channels: int
    messages: int


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
# __new__: check_message() is on every append's path.
_new_tuple = tuple.__new__


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
    return _new_tuple(Message, (role, content, author))


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
        system_tokens: The system prompt's tokens (0 without a budget).
    """

    max_channels: int
    max_messages: int
    max_tokens: int | None
    count_tokens: Callable[[str], int]
    system_prompt: str | None
    system_tokens: int

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
        if on_evict is not None and not callable(on_evict):
            raise InvalidOptionError(
                owner, "on_evict", on_evict, "a callable (channel, messages) -> None, or None"
            )
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InvalidOptionError(owner, "system_prompt", system_prompt, "a str or None")
        counter: Callable[[str], int] = approximate_tokens if count_tokens is None else count_tokens
        system_tokens = 0
        if system_prompt is not None and budget is not None:
            system_tokens = _checked_count(counter, "system_prompt", system_prompt)
            if system_tokens >= budget:
                raise InvalidOptionError(
                    owner,
                    "max_tokens",
                    max_tokens,
                    f"more than the system prompt's {system_tokens} tokens, "
                    "to leave room for messages",
                )
        return cls(
            checked_channels, checked_messages, budget, counter, system_prompt, system_tokens
        )

    def count(self, what: str, text: str) -> int:
        """Return ``count_tokens(text)``, checked to be a non-negative int.

        Raises:
            ValueError: If it is not; ``what`` names the text counted.
        """
        return _checked_count(self.count_tokens, what, text)

    def prompt_start(self) -> list[dict[str, str]]:
        """Return a new prompt holding the system prompt alone, or an empty one."""
        if self.system_prompt is None:
            return []
        return [{"role": "system", "content": self.system_prompt}]

    def first_kept(self, counts: Iterable[int], length: int) -> tuple[int, bool]:
        """Return the index of the oldest of ``length`` messages that fit the budget.

        ``counts`` gives the messages' tokens newest first; it is read only as far as
        the budget allows. The newest message is kept even alone over budget: the
        result is then ``(length - 1, True)``, else ``(index, False)``.
        """
        if self.max_tokens is None:
            return 0, False
        first = length
        remaining = self.max_tokens - self.system_tokens
        for count in counts:
            remaining -= count
            if remaining < 0:
                break
            first -= 1
        if first == length:
            return first - 1, True
        return first, False


def _checked_count(count_tokens: Callable[[str], int], what: str, text: str) -> int:
    count = count_tokens(text)
    if type(count) is not int or count < 0:
        raise argument_value_error(f"count_tokens({what})", count, "a non-negative int")
    return count
