"""``python -m examples.discord_bot``: the Discord bot, or ``--console``, or ``--demo``."""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio

from .core import BotCore
from .llm import OllamaChat

N = TypeVar("N", int, float)

MISSING_TOKEN = """\
DISCORD_TOKEN is not set. Create a bot in the Discord Developer Portal and export its token:

    export DISCORD_TOKEN=...

(examples/discord_bot/README.md shows every step). Without a token, try
`python -m examples.discord_bot --console` (needs Ollama) or `--demo` (needs nothing)."""


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if args.demo:
        return _demo(args)
    if args.console:
        return _console(args)
    return _discord(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, report, run_demo

    config = DemoConfig(
        channels=args.channels,
        rounds=args.rounds,
        max_channels=args.max_channels or 100,
        late_joiners=args.late_joiners,
    )
    metrics = args.metrics or Path(tempfile.mkdtemp(prefix="botperf-demo-")) / "metrics.jsonl"
    print(
        f"Demo: {config.messages} messages from simulated users in {config.channels} channels, "
        f"against a fake Ollama on 127.0.0.1.",
        file=sys.stderr,
    )
    outcome = anyio.run(run_demo, config, metrics, backend=args.backend)
    print(report(outcome))
    print(f"\nThe metric events are in {metrics}; summarize them with:\n")
    print(f"    {_this_python()} -m botperf report {metrics}")
    return 0


def _this_python() -> str:
    """The interpreter running the demo, as the user can type it (``.venv/bin/python``).

    ``botperf`` itself is only on PATH inside an activated virtual environment; the
    interpreter that runs this demo always has botperf installed.
    """
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable)


def _core(args: argparse.Namespace) -> BotCore:
    return BotCore(
        OllamaChat(timeout=args.timeout),
        metrics_path=args.metrics or "botperf-metrics.jsonl",
        max_channels=args.max_channels or 1000,
    )


def _console(args: argparse.Namespace) -> int:
    from .console import run_console

    core = _core(args)
    print(f"Chatting with {core.llm.model} at {core.llm.host}.")
    anyio.run(functools.partial(run_console, core, author=getpass.getuser()), backend=args.backend)
    print(f"Metric events are in {args.metrics or 'botperf-metrics.jsonl'}.")
    return 0


def _discord(args: argparse.Namespace) -> int:
    token = os.environ.get("DISCORD_TOKEN")
    if not token:
        print(MISSING_TOKEN, file=sys.stderr)
        return 2
    import discord

    from .bot import ChatBot, run_bot

    guild = os.environ.get("DISCORD_GUILD_ID")
    core = _core(args)
    logging.getLogger(__name__).info("answering with %s at %s", core.llm.model, core.llm.host)
    bot = ChatBot(core, guild_id=int(guild) if guild else None)
    try:
        asyncio.run(run_bot(bot, token))
    except discord.LoginFailure:
        print("Discord rejected DISCORD_TOKEN: copy the bot's token again.", file=sys.stderr)
        return 1
    except discord.PrivilegedIntentsRequired:
        print(
            "Enable the Message Content intent: Developer Portal > your application > Bot.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
