"""The baseline of ``replies.py`` (formerly ``examples/discord_bot/split.py``): split a reply
into Discord messages (at most 2,000 characters) without breaking code blocks.

Cuts are made at newlines when possible, then after spaces, then anywhere (never just before
three backticks, so a cut cannot create a fence that was not there). When a part ends inside a
fenced code block, the block is closed at the end of that part and reopened, with the same
language tag, at the start of the next, so every message renders its code as code.

A fence is a line that starts with three backticks, the way Discord reads them; the first
fence opens a block (the rest of its line is the language tag) and the next one closes it. A
reply that ends inside a block gets the block closed in its last part too. Language tags
longer than 32 characters are not repeated when a block is reopened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ["DISCORD_LIMIT", "Part", "split_message", "split_parts"]

DISCORD_LIMIT = 2000
"""The most characters Discord accepts in one message."""

_FENCE = "```"
_MAX_TAG = 32
_CLOSER = "\n" + _FENCE  # the longest closer; room for it is kept while inside a block
_MIN_PIECE = 20  # a long line starts in the current message only if this much room is left


@final
@dataclass(frozen=True)
class Part:
    """One message of a split reply: a slice of the reply plus the fence lines added around it.

    ``opener + body + closer`` is what is sent; the bodies of all parts, joined, are exactly
    the original reply.
    """

    body: str
    opener: str = ""
    """``"```tag\\n"`` when the part starts inside a code block, else ``""``."""
    closer: str = ""
    """``"```"`` or ``"\\n```"`` when the part ends inside a code block, else ``""``."""

    @property
    def text(self) -> str:
        """The message to send."""
        return self.opener + self.body + self.closer


def split_message(text: str, *, limit: int = DISCORD_LIMIT) -> list[str]:
    """Split ``text`` into messages of at most ``limit`` characters; ``[]`` for an empty text.

    See `split_parts` for the rules. O(n) in the length of the text.
    """
    return [part.text for part in split_parts(text, limit=limit)]


def split_parts(text: str, *, limit: int = DISCORD_LIMIT) -> list[Part]:
    """Split ``text`` into `Part` objects whose ``text`` is at most ``limit`` characters.

    Args:
        text: the reply, any length.
        limit: the most characters per message; at least 100 (room for reopened fences).

    Raises:
        ValueError: if ``limit`` is below 100.
    """
    if limit < 100:
        raise ValueError(f"limit must be at least 100 characters, got {limit}")
    parts: list[Part] = []
    body: list[str] = []
    size = 0
    opener = ""
    tag: str | None = None  # the open block's language tag, None outside a block
    for whole_line in _lines(text):
        line, is_fence = whole_line, whole_line.startswith(_FENCE)
        while line:
            inside_after = (tag is None) if is_fence else (tag is not None)
            reserve = len(_CLOSER) if inside_after else 0
            room = limit - len(opener) - size - reserve
            fresh_room = limit - len(_opener(tag) if tag is not None else "") - reserve
            if len(line) <= room:
                piece = line
            elif body and (len(line) <= fresh_room or room < _MIN_PIECE):
                # The line fits a message of its own (cut at the newline), or too little is
                # left here to be worth filling.
                parts.append(_part(body, opener, tag))
                body, size, opener = [], 0, _opener(tag) if tag is not None else ""
                continue
            else:
                piece = line[: _cut_point(line, room)]
            body.append(piece)
            size += len(piece)
            if is_fence:
                tag = _toggle(tag, piece)
                is_fence = False
            line = line[len(piece) :]
    if body:
        parts.append(_part(body, opener, tag))
    return parts


def _lines(text: str) -> list[str]:
    """The lines of ``text``, each with its newline (the last one may have none)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return [line for line in lines if line]


def _cut_point(line: str, max_len: int) -> int:
    """Where to cut a line longer than ``max_len``: after the last space that fits, else as late
    as possible.

    Never right before three backticks, so the next part cannot start with a false fence.
    """
    space = line.rfind(" ", 1, max_len)
    if space > 0 and not line.startswith(_FENCE, space + 1):
        return space + 1
    cut = max_len
    while cut > 1 and line.startswith(_FENCE, cut):
        cut -= 1
    return cut


def _toggle(tag: str | None, fence_line: str) -> str | None:
    if tag is not None:
        return None
    return fence_line[len(_FENCE) :].strip()


def _opener(tag: str) -> str:
    return f"{_FENCE}{tag if len(tag) <= _MAX_TAG else ''}\n"


def _closer(last_piece: str) -> str:
    return _FENCE if last_piece.endswith("\n") else _CLOSER


def _part(body: list[str], opener: str, tag: str | None) -> Part:
    closer = _closer(body[-1]) if tag is not None else ""
    return Part("".join(body), opener, closer)
