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

from examples.chatcore.core import BotCore
from examples.chatcore.monitoring import MetricsServer

from .app import build_core, parse_args, read_guild_id, serve_metrics

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
        flood=args.flood,
        rate_limit=args.rate_limit,
        llm_slots=args.llm_slots,
        cache_turns=args.cache_turns,
    )
    metrics = args.metrics or Path(tempfile.mkdtemp(prefix="botperf-demo-")) / "metrics.jsonl"
    cache = (
        f", then one {config.cache_turns}-turn conversation in both trim modes"
        if config.cache_turns
        else ""
    )
    print(
        f"Demo: {config.messages} messages from simulated users in {config.channels} channels"
        f"{cache}, against a fake Ollama on 127.0.0.1.",
        file=sys.stderr,
    )
    if args.metrics_host not in (None, "127.0.0.1"):
        print("The demo serves /metrics on 127.0.0.1 only.", file=sys.stderr)
    demo = functools.partial(run_demo, config, metrics, metrics_port=args.metrics_port or 0)
    outcome = anyio.run(demo, backend=args.backend)
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
    server = _serve_metrics(core, args)
    try:
        chat = functools.partial(run_console, core, author=getpass.getuser())
        anyio.run(chat, backend=args.backend)
    finally:
        if server is not None:
            server.close()
    print(f"Metric events are in {args.metrics or 'botperf-metrics.jsonl'}.")
    return 0


def _serve_metrics(core: BotCore, args: argparse.Namespace) -> MetricsServer | None:
    """`serve_metrics`, logging where; a port that cannot be bound exits the program."""
    try:
        server = serve_metrics(core, args)
    except OSError as error:
        where = f"{args.metrics_host}:{args.metrics_port}"
        raise SystemExit(f"cannot serve /metrics on {where}: {error}") from None
    if server is not None:
        logging.getLogger(__name__).info("serving Prometheus metrics at %s", server.url)
    return server


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
    server = _serve_metrics(core, args)
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
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
