"""Splitting replies at Discord's 2,000-character limit without breaking code blocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.chatcore.split import DISCORD_LIMIT, Part, split_message, split_parts

# Pieces that make replies full of fences, long lines and stray backticks. Every piece that
# holds a backtick ends with another character, so runs of backticks stay short (a run longer
# than a whole message cannot be cut without starting a part with a fence; see split.py).
PIECES = st.sampled_from(
    ["word ", "word", " ", "\n", "\n\n", "```python\n", "```\n", "```", "```js ", "`x", "``y"]
)
REPLIES = st.lists(PIECES | st.text(st.characters(exclude_characters="`"), max_size=40)).map(
    "".join
)
LIMITS = st.integers(min_value=100, max_value=400)


def fence_lines(message: str) -> int:
    return sum(line.startswith("```") for line in message.split("\n"))


@settings(max_examples=200, deadline=None)
@given(REPLIES, LIMITS)
def test_every_part_fits_the_limit(reply: str, limit: int) -> None:
    assert all(len(part) <= limit for part in split_message(reply, limit=limit))


@settings(max_examples=200, deadline=None)
@given(REPLIES, LIMITS)
def test_fences_are_balanced_in_every_part(reply: str, limit: int) -> None:
    assert all(fence_lines(part) % 2 == 0 for part in split_message(reply, limit=limit))


@settings(max_examples=200, deadline=None)
@given(REPLIES, LIMITS)
def test_parts_without_the_added_fences_join_to_the_reply(reply: str, limit: int) -> None:
    parts = split_parts(reply, limit=limit)
    assert "".join(part.body for part in parts) == reply
    assert all(part.text == part.opener + part.body + part.closer for part in parts)


@settings(max_examples=100, deadline=None)
@given(st.text(), LIMITS)
def test_any_text_round_trips_within_the_limit(reply: str, limit: int) -> None:
    parts = split_parts(reply, limit=limit)
    assert "".join(part.body for part in parts) == reply
    assert all(len(part.text) <= limit for part in parts)


def test_short_reply_is_one_message() -> None:
    assert split_message("hello") == ["hello"]


def test_empty_reply_is_no_message() -> None:
    assert split_message("") == []


def test_prefers_newlines() -> None:
    lines = [f"line {i:04d} " + "x" * 80 for i in range(40)]
    parts = split_message("\n".join(lines))
    assert len(parts) == 2
    assert parts[0].endswith("\n")
    assert parts[1].startswith("line ")


def test_cuts_a_long_line_after_a_space() -> None:
    parts = split_message("word " * 1000)
    assert len(parts) == 3
    assert all(part.endswith(" ") for part in parts)


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})  # " + "-" * 60 for i in range(60))
    parts = split_parts(f"Here:\n```python\n{code}\n```\nDone.")
    assert len(parts) == 3
    assert parts[0].closer == "```"
    assert parts[1].opener == "```python\n"
    assert parts[1].closer == "```"
    assert parts[2].opener == "```python\n"
    assert parts[2].closer == ""
    assert parts[2].text.endswith("```\nDone.")


def test_unclosed_block_is_closed_at_the_end() -> None:
    assert split_parts("```sh\nls") == [Part("```sh\nls", "", "\n```")]


def test_default_limit_is_discords() -> None:
    assert DISCORD_LIMIT == 2000
    assert max(len(part) for part in split_message("y" * 10_000)) == 2000


def test_rejects_a_tiny_limit() -> None:
    with pytest.raises(ValueError, match="at least 100"):
        split_message("x", limit=99)
