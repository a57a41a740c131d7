"""The bot's settings, read from the command line and the environment, and `create_bot`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from botperf import RateLimiter
from examples.chatcore.core import DEFAULT_LLM_SLOTS, BotCore
from examples.chatcore.llm import OllamaChat
from examples.chatcore.monitoring import DEFAULT_METRICS_HOST, MetricsServer

if TYPE_CHECKING:
    import discord

    from .bot import ChatBot

__all__ = ["build_core", "create_bot", "parse_args", "read_guild_id", "serve_metrics"]

N = TypeVar("N", int, float)

DEFAULT_RATE_LIMIT = 10.0
"""Messages per minute each user may send by default, in bursts of as many."""

#: The options an environment variable sets when the command line does not.
ENVIRONMENT = {
    "rate_limit": "BOT_RATE_LIMIT",
    "llm_slots": "OLLAMA_SLOTS",
    "metrics_port": "METRICS_PORT",
    "metrics_host": "METRICS_HOST",
}


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


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text}")
    return port


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
        "--flood",
        type=_positive(int, zero=True),
        default=100,
        help="demo: messages one user floods the bot with (100; 0 skips the flood round)",
    )
    parser.add_argument(
        "--cache-turns",
        type=_positive(int, zero=True),
        default=60,
        metavar="N",
        help="demo: turns of the conversation played with trim='sliding' and trim='stable' "
        "to count the prompt tokens a caching Ollama evaluates (60; 0 skips that round)",
    )
    parser.add_argument(
        "--timeout", type=_positive(float), default=120.0, help="seconds per LLM reply (120)"
    )
    parser.add_argument(
        "--rate-limit",
        type=_positive(float, zero=True),
        default=None,
        metavar="N",
        help="messages per minute each user may send, in bursts of as many; the first one "
        f"over gets a 'slow down' reply (env BOT_RATE_LIMIT; {DEFAULT_RATE_LIMIT:g}; 0: no limit)",
    )
    parser.add_argument(
        "--llm-slots",
        type=_positive(int),
        default=None,
        metavar="N",
        help="Ollama calls run at once, shared fairly between users: set it to Ollama's "
        f"OLLAMA_NUM_PARALLEL (env OLLAMA_SLOTS; {DEFAULT_LLM_SLOTS})",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on http://ADDR:PORT/metrics (env METRICS_PORT; "
        "off by default; the demo: a free port)",
    )
    parser.add_argument(
        "--metrics-host",
        default=None,
        metavar="ADDR",
        help=f"the address /metrics listens on (env METRICS_HOST; {DEFAULT_METRICS_HOST}: "
        "this machine only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    _from_environment(parser, args)
    return args


def _from_environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill the options not given on the command line from `ENVIRONMENT`, then defaults.

    A variable is checked as its option would be: a bad value exits with argparse's usual
    one-line error, naming the variable.
    """
    parsers: dict[str, Callable[[str], object]] = {
        "rate_limit": _positive(float, zero=True),
        "llm_slots": _positive(int),
        "metrics_port": _port,
        "metrics_host": str,
    }
    defaults: dict[str, object] = {
        "rate_limit": DEFAULT_RATE_LIMIT,
        "llm_slots": DEFAULT_LLM_SLOTS,
        "metrics_port": None,
        "metrics_host": DEFAULT_METRICS_HOST,
    }
    for option, variable in ENVIRONMENT.items():
        if getattr(args, option) is not None:
            continue
        text = os.environ.get(variable, "").strip()
        if not text:
            setattr(args, option, defaults[option])
            continue
        try:
            setattr(args, option, parsers[option](text))
        except argparse.ArgumentTypeError as error:
            parser.error(f"{variable}={text}: {error}")


def build_core(args: argparse.Namespace) -> BotCore:
    """The chat core the options in ``args`` describe (Ollama from the environment)."""
    return BotCore(
        OllamaChat(timeout=args.timeout),
        metrics_path=args.metrics or "botperf-metrics.jsonl",
        max_channels=args.max_channels or 1000,
        rate_limiter=RateLimiter(args.rate_limit, 60.0) if args.rate_limit else None,
        llm_slots=args.llm_slots,
    )


def serve_metrics(core: BotCore, args: argparse.Namespace) -> MetricsServer | None:
    """Serve ``/metrics`` for ``core`` if ``args`` asks for it (`--metrics-port`), else None.

    Raises:
        OSError: If the address cannot be bound (the port is taken, say).
    """
    if args.metrics_port is None:
        return None
    return MetricsServer(core, args.metrics_port, host=args.metrics_host).start()


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
    ``None``) and the environment (`OLLAMA_HOST`, `OLLAMA_MODEL`, `DISCORD_GUILD_ID`,
    `BOT_RATE_LIMIT`, `OLLAMA_SLOTS`). ``/metrics`` is not served: `serve_metrics`
    does that for ``bot.core``.
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
