"""Console mode: chat with the core in a terminal, no Discord token needed."""

from __future__ import annotations

import sys
from contextlib import aclosing
from typing import TextIO

import anyio.to_thread

from .protocol import ChatCore

__all__ = ["run_console"]

HELP = "Type a message and press Enter. /reset forgets the conversation, /quit (or Ctrl-D) leaves."


async def run_console(
    core: ChatCore,
    *,
    author: str = "you",
    channel_id: int = 0,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> None:
    """Start the core, stream its replies to the lines read from ``stdin``; close the core.

    Lines are read in a worker thread so the event loop stays free while the user types.
    """
    await core.start()
    stdout.write(HELP + "\n")
    try:
        while True:
            stdout.write("> ")
            stdout.flush()
            line = await anyio.to_thread.run_sync(stdin.readline, abandon_on_cancel=True)
            if not line:
                stdout.write("\n")
                break
            text = line.strip()
            if text in ("/quit", "/exit"):
                break
            if text == "/reset":
                await core.reset(channel_id)
                stdout.write("(history cleared)\n")
            elif text:
                async with aclosing(core.stream(channel_id, author, text)) as pieces:
                    async for piece in pieces:
                        stdout.write(piece)
                        stdout.flush()
                stdout.write("\n")
    finally:
        await core.aclose()
