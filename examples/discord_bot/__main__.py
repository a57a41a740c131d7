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
from collections.abc import Sequence
from pathlib import Path

import anyio

from .app import build_core, parse_args, read_guild_id

MISSING_TOKEN = """\
DISCORD_TOKEN is not set. Create a bot in the Discord Developer Portal and export its token:

    export DISCORD_TOKEN=...

(examples/discord_bot/README.md shows every step). Without a token, try
`python -m examples.discord_bot --console` (needs Ollama) or `--demo` (needs nothing)."""


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


def _console(args: argparse.Namespace) -> int:
    from examples.chatcore.console import run_console

    core = build_core(args)
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

    try:
        guild_id = read_guild_id()
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    core = build_core(args)
    logging.getLogger(__name__).info("answering with %s at %s", core.llm.model, core.llm.host)
    bot = ChatBot(core, guild_id=guild_id)
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
