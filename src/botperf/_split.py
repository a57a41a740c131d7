"""Splitting a long reply into chat messages without breaking its code blocks.

A chat platform caps the length of one message (Discord 2,000 characters, Telegram 4,096), so a
long reply goes out as several. `split_message` cuts where a reader expects a break (a blank
line, else a line end, else a space) and repairs fenced code blocks across cuts, so every part
renders on its own. The cutting itself is `_split`, which `ReplyStreamer` also uses to continue
a growing reply from its last message without re-splitting the messages already final.

A fence is a line of at least three backticks after at most three spaces, as in CommonMark and
as Discord, Telegram and Slack render them. Outside a block, a fence whose info string (the rest
of its line) holds no backtick opens one; inside, a line of at least as many backticks and
nothing else closes it. Every other line is content.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import NamedTuple, final

from ._exceptions import BotperfTypeError
from ._options import check_int_option

__all__ = ["MIN_LENGTH", "split_message"]

MIN_LENGTH = 20
"""The smallest `max_length`: room for a code block's added fence lines and some text."""

# How a rendered line would start to be read as a fence: no cut may create one.
_FENCE_TICKS = re.compile(r" {0,3}(`{3,})")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_SPACE_RUN = re.compile(r"[^\S\n]+")
_WHITESPACE_RUN = re.compile(r"\s*")


# How good a cut at a line end is (see _Splitter.gap_cut).
_GOOD, _BEFORE_CLOSE, _AFTER_OPEN, _NONE = object(), object(), object(), object()


@final
class _Block(NamedTuple):
    """A fenced code block: what reopens it at the start of a part and closes it at the end."""

    opener: str
    closer: str
    ticks: int


@final
class _Part(NamedTuple):
    """One message: ``opener + text[start:end] + closer``."""

    opener: str
    start: int
    end: int
    closer: str


def split_message(text: str, *, max_length: int = 2000) -> list[str]:
    """Split a reply into messages of at most `max_length` characters, code blocks intact.

    A text that fits is returned as the one message it is. A longer one is cut where a reader
    expects a break: at a blank line, else at a line end, else at a space; a word is cut only
    when it is longer than a message. The whitespace at a cut is dropped (indentation of the
    next line kept). A part that ends inside a fenced code block gets a closing fence line, and
    the next part reopens the block with the same fence line (such as `` ```python ``), so
    every message renders on its own; drop those added lines and join the parts, and you get
    the text back, up to the whitespace at the cuts. A text that is empty or only whitespace
    gives no message. O(n) in the length of the text.

    Args:
        text: The reply.
        max_length: The most characters in one message; at least 20.

    Returns:
        The messages, in order, none of them empty or only whitespace.

    Raises:
        InvalidOptionError: If `max_length` is not an int of at least 20.
        TypeError: If `text` is not a str.
    """
    max_length = check_int_option("split_message", "max_length", max_length, minimum=MIN_LENGTH)
    if not isinstance(text, str):
        raise BotperfTypeError(
            f"split_message() takes the reply as a str, got {type(text).__name__}"
        )
    return [
        part.opener + text[part.start : part.end] + part.closer for part in _split(text, max_length)
    ]


def _split(text: str, max_length: int, start: int = 0, max_parts: int = -1) -> list[_Part]:
    """Split `text[start:]`, which begins a part, into at most `max_parts` parts (all if < 0)."""
    n = len(text)
    if start == 0 and n <= max_length:
        return [] if not text or text.isspace() else [_Part("", 0, n, "")]
    return _Splitter(text, max_length).split(start, max_parts)


@final
class _Splitter:
    """The cutting of one text: its fence lines parsed once, then one window per part."""

    __slots__ = ("blocks", "ends", "max_length", "n", "starts", "text")

    def __init__(self, text: str, max_length: int) -> None:
        self.text = text
        self.n = len(text)
        self.max_length = max_length
        # For each fence line: where it starts, where its content ends, and the block open
        # after it (None after a closing fence).
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.blocks: list[_Block | None] = []
        open_ticks = 0  # backticks of the open block's fence; 0 outside any block
        n = self.n
        line = 0  # the start of the line the search is in
        found = text.find("```")
        while found >= 0:
            start = max(text.rfind("\n", line, found) + 1, line)
            end = text.find("\n", found)
            end = n if end < 0 else end
            if found - start <= 3 and not text[start:found].strip(" "):
                after_ticks = found + 3
                while after_ticks < end and text[after_ticks] == "`":
                    after_ticks += 1
                ticks, info = after_ticks - found, text[after_ticks:end]
                if open_ticks == 0 and "`" not in info:
                    open_ticks = ticks
                    line_text = text[start:end].rstrip()
                    self.blocks.append(_block(line_text, "`" * ticks, max_length))
                    self.starts.append(start)
                    self.ends.append(start + len(line_text))
                elif open_ticks and ticks >= open_ticks and not info.strip():
                    open_ticks = 0
                    self.blocks.append(None)
                    self.starts.append(start)
                    self.ends.append(start + len(text[start:end].rstrip()))
            line = end + 1
            found = text.find("```", line)

    def block_at(self, offset: int) -> _Block | None:
        """The block open at `offset`, decided by the fence lines that start before it."""
        index = bisect_left(self.starts, offset) - 1
        return self.blocks[index] if index >= 0 else None

    def split(self, pos: int, max_parts: int) -> list[_Part]:
        text, n = self.text, self.n
        parts: list[_Part] = []
        while pos < n and len(parts) != max_parts:
            block = self.block_at(pos)
            opener = block.opener if block is not None else ""
            room = self.max_length - len(opener)
            if n - pos <= room:
                # Never only whitespace: a part starts at text, or at indentation before it.
                parts.append(_Part(opener, pos, n, ""))
                break
            # Whitespace running past the limit is dropped at a cut, so a gap that starts
            # within the limit is a candidate even if it ends beyond it.
            end = _whitespace_end(text, pos + room)
            cut = self.line_cut(pos, end, room) or self.space_cut(pos, end, room)
            if cut is None:
                if text[pos].isspace():
                    # Indentation or blank lines too long to keep with the text after them:
                    # drop them rather than cut a word that would fit, but keep a fence line
                    # whole.
                    skip_to = _whitespace_end(text, pos)
                    index = bisect_left(self.starts, skip_to) - 1
                    if index >= 0 and skip_to <= self.ends[index]:
                        skip_to = self.starts[index]
                    if skip_to > pos:
                        pos = skip_to
                        continue
                cut = self.word_cut(pos, room)
            body_end, next_start = cut
            if _whitespace_end(text, next_start) == n:
                # Only whitespace after the cut: this is the last part, and the text's end is
                # left as it is (a block it leaves open stays open).
                parts.append(_Part(opener, pos, body_end, ""))
                break
            closing = self.block_at(body_end)
            closer = closing.closer if closing is not None else ""
            if len(opener) + body_end - pos + len(closer) > self.max_length:
                closer = ""  # only after a cut through fences longer than a part
            parts.append(_Part(opener, pos, body_end, closer))
            pos = next_start
        return parts

    def fits(self, pos: int, body_end: int, room: int) -> bool:
        block = self.block_at(body_end)
        return body_end - pos + (len(block.closer) if block is not None else 0) <= room

    def line_cut(self, pos: int, end: int, room: int) -> tuple[int, int] | None:
        """The last blank-line cut that fits, else the last line-end cut: (body end, next start).

        Two kinds of line cut are last resorts. Right before a closing fence, the next part
        would begin with an empty block. Right after an opening fence, the next part starts
        with the same fence line, so only blank lines dropped there are gained (and with no
        blank line, nothing: that cut is never made).
        """
        text = self.text
        last_resort: tuple[int, int] | None = None
        for match in reversed(list(_BLANK_LINE.finditer(text, pos, end))):
            cut, kind = self.gap_cut(pos, match.start(), room)
            if kind is _GOOD:
                return cut
            if kind is not _NONE and (last_resort is None or cut[0] > last_resort[0]):
                last_resort = cut
        newline = text.rfind("\n", pos, end)
        while newline >= pos:
            cut, kind = self.gap_cut(pos, newline, room)
            if kind is _GOOD:
                return cut
            if kind is _BEFORE_CLOSE and (last_resort is None or cut[0] > last_resort[0]):
                last_resort = cut
            if cut[0] == pos:
                break  # only whitespace before: no part to end here
            newline = text.rfind("\n", pos, cut[0])
        return last_resort

    def gap_cut(self, pos: int, newline: int, room: int) -> tuple[tuple[int, int], object]:
        """The cut at the whitespace around `newline`, and how good it is.

        Good: any fitting blank-line or line-end cut, or one that ends the text. Before a
        closing fence, or after an opening fence with a blank line: last resorts. After an
        opening fence with no blank line, or not fitting: none.
        """
        text = self.text
        gap_start = newline
        while gap_start > pos and text[gap_start - 1].isspace():
            gap_start -= 1
        gap_end = newline + 1
        if gap_end < self.n and text[gap_end].isspace():
            gap_end = _whitespace_end(text, gap_end)
        next_start = text.rfind("\n", newline, gap_end) + 1
        cut = (gap_start, next_start)
        if gap_start == pos:
            return cut, _NONE
        starts, blocks = self.starts, self.blocks
        index = bisect_left(starts, gap_start) - 1
        block = blocks[index] if index >= 0 else None
        if gap_start - pos + (len(block.closer) if block is not None else 0) > room:
            return cut, _NONE
        if gap_end == self.n:
            return cut, _GOOD  # only whitespace left: the last part
        blank = next_start - 1 > newline or text.rfind("\n", gap_start, newline) >= 0
        if block is not None and self.ends[index] == gap_start:
            return cut, _AFTER_OPEN if blank else _NONE
        if block is not None and index + 1 < len(starts) and starts[index + 1] == next_start:
            return cut, _BEFORE_CLOSE  # inside a block, the next fence line closes it
        return cut, _GOOD

    def space_cut(self, pos: int, end: int, room: int) -> tuple[int, int] | None:
        """The last cut at spaces within a line that fits and creates no fence."""
        text = self.text
        for match in reversed(list(_SPACE_RUN.finditer(text, pos, end))):
            gap_start, gap_end = match.span()
            if gap_start == pos:
                break
            if text[gap_start - 1] == "\n" or text.startswith("\n", gap_end):
                continue  # part of a line-end gap, judged by line_cut
            if self.fits(pos, gap_start, room) and self.mid_line_ok(pos, gap_start, gap_end):
                return gap_start, gap_end
        return None

    def word_cut(self, pos: int, room: int) -> tuple[int, int]:
        """Cut inside a word as late as fits, never where a fence would appear or break."""
        text = self.text
        for cut in range(pos + room, pos, -1):
            if text[cut - 1].isspace() or text[cut].isspace():
                continue  # whitespace no other cut could use: keep it, cut a word
            if self.fits(pos, cut, room) and self.mid_line_ok(pos, cut, cut):
                return cut, cut
        # Only a fence line or a run of backticks longer than a part is left; cut it anyway.
        return pos + room, pos + room

    def mid_line_ok(self, pos: int, body_end: int, next_start: int) -> bool:
        """Whether a cut inside a line keeps every fence as it is and makes no new one.

        The cut must not fall in a fence line, the part's last line must not read as a fence,
        and the next part must not start with backticks that could.
        """
        text = self.text
        index = bisect_left(self.starts, body_end) - 1
        if index >= 0 and body_end <= self.ends[index]:
            return False
        if text.startswith("```", next_start):
            return False
        line_start = max(text.rfind("\n", pos, body_end) + 1, pos)
        match = _FENCE_TICKS.match(text, line_start, body_end)
        if match is None:
            return True
        info = text[match.end() : body_end]
        block = self.blocks[index] if index >= 0 else None
        if block is None:
            return "`" in info
        return len(match.group(1)) < block.ticks or bool(info.strip())


def _whitespace_end(text: str, pos: int) -> int:
    """Where the run of whitespace starting at `pos` ends (`pos` itself if there is none)."""
    match = _WHITESPACE_RUN.match(text, pos)
    return match.end() if match is not None else pos


def _block(line: str, ticks: str, max_length: int) -> _Block:
    """How to close and reopen a block opened by `line`, leaving room for text in a part."""
    closer = "\n" + ticks
    if len(line) + 1 + len(closer) < max_length:
        return _Block(line + "\n", closer, len(ticks))
    if len(ticks) + 1 + len(closer) < max_length:
        # A fence line too long to repeat: reopen with its backticks only.
        return _Block(ticks + "\n", closer, len(ticks))
    return _Block("", "", len(ticks))  # fences longer than a part cannot be repaired
