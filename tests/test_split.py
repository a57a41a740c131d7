"""split_message: parts that fit, cut where a reader expects, and code blocks that render alone.

The properties compare the parts with a line-by-line model of fenced code blocks written
here (`Fences`), independent of the regular expressions the splitter uses.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from botperf import InvalidOptionError, split_message
from botperf._split import _Part, _split


@dataclass
class Fences:
    """The model: which fence opened the block a line is in, scanning lines in order."""

    line: str | None = None  # the opening fence line of the open block, None outside
    ticks: int = 0

    def scan(self, text: str) -> Fences:
        for line in text.split("\n"):
            self.step(line)
        return self

    def step(self, line: str) -> None:
        indent = len(line) - len(line.lstrip(" "))
        rest = line[indent:] if indent <= 3 else ""
        ticks = len(rest) - len(rest.lstrip("`"))
        info = rest[ticks:]
        if ticks < 3:
            return
        if self.line is None:
            if "`" not in info:
                self.line, self.ticks = line.rstrip(), ticks
        elif ticks >= self.ticks and info.strip() == "":
            self.line, self.ticks = None, 0


def state_at(text: str, offset: int) -> Fences:
    """The model's state for a cut at `offset`, inside a line or at its end."""
    return Fences().scan(text[:offset])


def cut_class(gap: str) -> str:
    newlines = gap.count("\n")
    if newlines >= 2:
        return "blank line"
    if newlines == 1:
        return "line end"
    return "space" if gap else "mid-word"


FENCE_LINES = ["```", "```python", "````", "````js", "  ```c++", "``` txt", "```  "]
WORDS = st.text(
    st.characters(exclude_characters="`\n", exclude_categories=["Zs", "Cc"]),
    min_size=1,
    max_size=30,
)
PROSE_LINE = st.lists(
    st.tuples(WORDS, st.sampled_from([" ", "  ", "\t", " \u00a0"])), max_size=12
).map(lambda pairs: "".join(word + space for word, space in pairs).rstrip())
LINE = st.one_of(
    PROSE_LINE,
    PROSE_LINE.map(lambda line: "    " + line),  # indented code
    st.sampled_from(FENCE_LINES),
    st.just(""),
    st.just("   "),
)
FENCED_TEXT = st.lists(LINE, max_size=60).map("\n".join)
PROSE = st.lists(
    st.one_of(PROSE_LINE, st.just(""), PROSE_LINE.map(lambda line: "  " + line)), max_size=40
).map("\n".join)
LIMITS = st.integers(min_value=20, max_value=160)


def fenced_examples(test: Callable[[str, int], None]) -> Callable[[str, int], None]:
    """Texts that reach the splitter's rarer rules, tried before the generated ones."""
    for text, max_length in [
        ("  ```c++\n    000000 0", 20),  # the whitespace before a fence line is kept
        ("```python\n``` a b c d e f g h i j k l m n o p\n```\nafter", 20),  # looks like one
        ("```python\n````` not a closing fence, only content\n```", 30),
        ("x" * 20 + "```" + "y" * 10 + "\n```js\ncode\n```", 20),  # no part starts with ```
        ("```a`b is inline code, not a fence, so nothing is added\n" * 3, 20),
    ]:
        test = example(text, max_length)(test)
    return test


def check_parts(text: str, max_length: int) -> list[_Part]:
    """Every property that holds for any text; returns the parts for further checks."""
    messages = split_message(text, max_length=max_length)
    parts = _split(text, max_length)
    assert messages == [p.opener + text[p.start : p.end] + p.closer for p in parts]
    for message in messages:
        assert 0 < len(message) <= max_length
        assert message.strip()
    # The bodies are slices of the text in order, only whitespace between them.
    position = 0
    for part in parts:
        assert position <= part.start < part.end
        assert text[position : part.start].strip() == ""
        position = part.end
    assert text[position:].strip() == ""
    if not text.strip():
        assert messages == []
    return parts


@given(st.text(), LIMITS)
@example("", 20)
@example(" \n\t " * 40, 20)
@example("`" * 12 + "\n" + "code line\n" * 6 + "`" * 12, 20)  # fences too long to repeat
def test_any_text_splits_into_non_empty_parts_that_fit_and_join_back(
    text: str, max_length: int
) -> None:
    check_parts(text, max_length)


@given(FENCED_TEXT, LIMITS)
@fenced_examples
def test_added_lines_close_and_reopen_the_block_with_its_own_fence_line(
    text: str, max_length: int
) -> None:
    parts = check_parts(text, max_length)
    for before, after in itertools.pairwise(parts):
        state = state_at(text, before.end)
        if state.line is None:
            assert (before.closer, after.opener) == ("", "")
        else:
            assert before.closer == "\n" + "`" * state.ticks
            assert after.opener == state.line + "\n"
    if parts:
        assert parts[0].opener == ""
        assert parts[-1].closer == ""


@given(FENCED_TEXT, LIMITS)
@fenced_examples
def test_every_part_renders_its_code_blocks_on_its_own(text: str, max_length: int) -> None:
    messages = split_message(text, max_length=max_length)
    for message in messages[:-1]:
        assert Fences().scan(message).line is None, message
    if messages:
        assert Fences().scan(messages[-1]).line == Fences().scan(text).line


@given(PROSE, LIMITS)
def test_cuts_prefer_blank_lines_then_line_ends_then_spaces(text: str, max_length: int) -> None:
    parts = check_parts(text, max_length)
    for before, after in itertools.pairwise(parts):
        kind = cut_class(text[before.end : after.start])
        inner = text[before.start : before.end].lstrip()
        if kind == "line end":
            assert not re.search(r"\n[^\S\n]*\n", inner), "a blank line was available"
        elif kind == "space":
            assert "\n" not in inner, "a line end was available"
        elif kind == "mid-word":
            assert not re.search(r"\s", inner), "a space was available"


@given(st.one_of(FENCED_TEXT, PROSE), LIMITS)
def test_a_word_is_cut_only_when_it_is_longer_than_a_part(text: str, max_length: int) -> None:
    parts = check_parts(text, max_length)
    for before, after in itertools.pairwise(parts):
        if before.end != after.start:
            continue
        cut = before.end
        start = cut
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        end = cut
        while end < len(text) and not text[end].isspace():
            end += 1
        line_start = text.rfind("\n", 0, cut) + 1
        if re.match(r" {0,3}```", text[line_start:]):
            # A line that starts like a fence is not cut at its spaces: its first part
            # could read as a fence that opens or closes a block.
            continue
        # A word that starts its line carries the line's indentation, which is kept.
        indent = start
        while indent > 0 and text[indent - 1] in " \t":
            indent -= 1
        if indent == 0 or text[indent - 1] == "\n":
            start = indent
        # The word would not fit even at the start of a part, between the added fences.
        assert (end - start) + len(after.opener) + len(before.closer) > max_length


def test_a_reply_that_fits_is_one_message_exactly() -> None:
    reply = "  Hello,\n\n    indented\tworld!  \n"
    assert split_message(reply, max_length=len(reply)) == [reply]


@pytest.mark.parametrize("reply", ["", " ", "\n\n\t  \n", " " * 5000])
def test_an_empty_or_blank_reply_is_no_message(reply: str) -> None:
    assert split_message(reply) == []


def test_a_blank_line_is_preferred_to_a_later_line_end() -> None:
    reply = "first paragraph\n\nsecond one\nthird line"
    assert split_message(reply, max_length=35) == ["first paragraph", "second one\nthird line"]


def test_a_line_end_is_preferred_to_a_later_space() -> None:
    reply = "one line\ntwo words and more words"
    assert split_message(reply, max_length=25) == ["one line", "two words and more words"]


def test_a_space_is_preferred_to_cutting_a_word() -> None:
    assert split_message("alpha beta gamma delta", max_length=20) == ["alpha beta gamma", "delta"]


def test_a_word_longer_than_a_part_is_cut() -> None:
    assert split_message("x" * 45, max_length=20) == ["x" * 20, "x" * 20, "x" * 5]


def test_indentation_after_a_cut_is_kept() -> None:
    reply = "def f():\n    return 1\n    # trailing comment"
    assert split_message(reply, max_length=25) == [
        "def f():\n    return 1",
        "    # trailing comment",
    ]


def test_a_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})" for i in range(6))
    messages = split_message(f"Here:\n```python\n{code}\n```\nDone.", max_length=40)
    assert messages == [
        "Here:\n```python\nprint(0)\nprint(1)\n```",
        "```python\nprint(2)\nprint(3)\nprint(4)\n```",
        "```python\nprint(5)\n```\nDone.",
    ]


def test_a_cut_before_a_code_block_keeps_the_block_whole() -> None:
    reply = "Some intro.\nMore intro.\n```python\nprint(1)\nprint(2)\n```"
    assert split_message(reply, max_length=40) == [
        "Some intro.\nMore intro.",
        "```python\nprint(1)\nprint(2)\n```",
    ]


def test_no_part_ends_with_an_empty_block() -> None:
    messages = split_message("Intro text.\n```python\n" + "y = 2\n" * 8 + "```", max_length=30)
    assert all(not message.endswith("```python\n```") for message in messages)
    assert messages[0] == "Intro text."


def test_a_fence_line_longer_than_a_part_still_gives_parts_that_fit() -> None:
    fence = "```" + "x" * 40
    reply = f"{fence}\n" + "line\n" * 8 + "```"
    parts = check_parts(reply, 30)
    assert len(parts) > 1


def test_a_cut_never_starts_a_part_with_backticks_that_would_open_a_block() -> None:
    reply = "see this: ```not a fence``` and more words after it"
    for message in split_message(reply, max_length=20):
        assert not message.startswith("```")


@pytest.mark.parametrize("max_length", [19, 0, -5, 2.5, "2000", True, None])
def test_a_bad_max_length_is_an_invalid_option(max_length: object) -> None:
    with pytest.raises(InvalidOptionError, match="max_length"):
        split_message("hello", max_length=max_length)  # type: ignore[arg-type]


def test_text_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="str"):
        split_message(b"hello")  # type: ignore[arg-type]
