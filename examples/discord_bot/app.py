"""The bot's settings, read from the command line and the environment, and `create_bot`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from examples.chatcore.core import BotCore
from examples.chatcore.llm import OllamaChat

if TYPE_CHECKING:
    import discord

    from .bot import ChatBot

__all__ = ["build_core", "create_bot", "parse_args", "read_guild_id"]

N = TypeVar("N", int, float)


def _positive(kind: Callable[[str], N], *, zero: bool = False) -> Callable[[str], N]:
    """An argparse type: a number > 0 (>= 0 with ``zero``)."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value >= 0 if zero else value > 0):
            raise argparse.ArgumentTypeError(f"must be {'>=' if zero else '>'} 0, got {text}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.discord_bot",
        description="A Discord bot answering through Ollama. Without options it runs the bot "
        "(DISCORD_TOKEN, OLLAMA_HOST, OLLAMA_MODEL from the environment).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--console", action="store_true", help="chat in this terminal instead")
    mode.add_argument(
        "--demo", action="store_true", help="simulate a burst of users against a fake Ollama"
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop for --console and --demo (the Discord bot needs asyncio)",
    )
    parser.add_argument("--channels", type=_positive(int), default=120, help="demo: channels (120)")
    parser.add_argument(
        "--rounds", type=_positive(int), default=4, help="demo: messages per channel (4)"
    )
    parser.add_argument(
        "--late-joiners",
        type=_positive(int, zero=True),
        default=40,
        help="demo: users joining a reply mid-stream in the last round (40; 0 skips it)",
    )
    parser.add_argument(
        "--max-channels",
        type=_positive(int),
        default=None,
        help="channels whose history is kept (1000; the demo: 100, to show eviction)",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=None,
        metavar="PATH",
        help="file the metric events are appended to (botperf-metrics.jsonl; the demo: "
        "metrics.jsonl in a new temporary directory)",
    )
    parser.add_argument(
        "--timeout", type=_positive(float), default=120.0, help="seconds per LLM reply (120)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser.parse_args(argv)


def build_core(args: argparse.Namespace) -> BotCore:
    """The chat core the options in ``args`` describe (Ollama from the environment)."""
    return BotCore(
        OllamaChat(timeout=args.timeout),
        metrics_path=args.metrics or "botperf-metrics.jsonl",
        max_channels=args.max_channels or 1000,
    )


def read_guild_id() -> int | None:
    """The guild `DISCORD_GUILD_ID` names, if set: slash commands are synced there only.

    Raises:
        ValueError: If it is set but not a number.
    """
    text = os.environ.get("DISCORD_GUILD_ID", "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"DISCORD_GUILD_ID must be a server's numeric ID, got {text!r}; "
            "copy it with Developer Mode on, or unset it to sync commands globally."
        ) from None


def create_bot(
    argv: Sequence[str] | None = None, *, intents: discord.Intents | None = None
) -> ChatBot:
    """Build the Discord bot as `python -m examples.discord_bot` would, without starting it.

    Reads the same settings: the command-line options in ``argv`` (``sys.argv[1:]`` when
    ``None``) and the environment (`OLLAMA_HOST`, `OLLAMA_MODEL`, `DISCORD_GUILD_ID`).
    The bot is neither started nor logged in: start its core and log in with
    `run_bot(bot, token)`, or drive it from other code and tests.

    Args:
        argv: Command-line options; `--console` and `--demo` are refused.
        intents: The gateway intents (see `ChatBot`).

    Returns:
        The bot, owning its core.

    Raises:
        SystemExit: If ``argv`` holds an invalid option (argparse's usual exit).
        ValueError: If ``argv`` asks for the console or the demo, or `DISCORD_GUILD_ID`
            is not a number.
    """
    from .bot import ChatBot

    args = parse_args(argv)
    if args.console or args.demo:
        raise ValueError(
            "create_bot() builds the Discord bot; run --console and --demo through "
            "`python -m examples.discord_bot` instead."
        )
    return ChatBot(build_core(args), guild_id=read_guild_id(), intents=intents)
