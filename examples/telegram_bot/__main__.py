"""``python -m examples.telegram_bot``: the Telegram bot, configured by the environment.

``TELEGRAM_TOKEN`` (required, from @BotFather), ``TELEGRAM_API_URL`` (a Bot API server's base
URL; Telegram's own by default), ``OLLAMA_HOST`` and ``OLLAMA_MODEL``. A missing or rejected
token, or a Bot API server that cannot be reached, is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramUnauthorizedError
from aiogram.utils.token import TokenValidationError

from examples.chatcore.core import BotCore
from examples.chatcore.llm import OllamaChat

from .bot import SYSTEM_PROMPT, TELEGRAM_LIMIT, TelegramChatBot, make_bot

__all__ = ["main", "parse_args"]

logger = logging.getLogger("examples.telegram_bot")

DEFAULT_API_URL = "https://api.telegram.org"
CONNECT_TIMEOUT = 10  # seconds for the first call (getMe): a server that cannot be reached


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.telegram_bot",
        description="A Telegram bot answering through Ollama (TELEGRAM_TOKEN, TELEGRAM_API_URL, "
        "OLLAMA_HOST, OLLAMA_MODEL from the environment).",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("botperf-metrics.jsonl"),
        metavar="PATH",
        help="file the metric events are appended to (botperf-metrics.jsonl)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM reply (120)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0, got {args.timeout}")
    return args


async def _run(args: argparse.Namespace, token: str, api_url: str | None) -> str | None:
    """Run the bot until a signal; what went wrong at start-up, in one line, or ``None``."""
    where = api_url or DEFAULT_API_URL
    try:
        bot = make_bot(token, api_url=api_url)
    except TokenValidationError:
        return (
            "TELEGRAM_TOKEN is not a bot token (it looks like 123456789:AAF...); "
            "copy it from @BotFather."
        )
    try:
        me = await bot.get_me(request_timeout=CONNECT_TIMEOUT)
    except TelegramUnauthorizedError:
        await bot.session.close()
        return (
            f"the Bot API at {where} rejected TELEGRAM_TOKEN (401 Unauthorized); check the token."
        )
    except TelegramNetworkError as error:
        await bot.session.close()
        return f"cannot reach the Bot API at {where}: {error.message}"
    except TelegramAPIError as error:
        await bot.session.close()
        return f"the Bot API at {where} refused getMe: {error.message}"
    logger.info("logged in as @%s (%s) on %s", me.username, me.id, where)
    core = BotCore(
        OllamaChat(timeout=args.timeout),
        metrics_path=args.metrics,
        system_prompt=SYSTEM_PROMPT,
        max_length=TELEGRAM_LIMIT,
    )
    await TelegramChatBot(core, bot=bot).run()
    return None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the Telegram bot; the exit status (2 for a start-up problem, said in one line)."""
    env = os.environ if environ is None else environ
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    token = env.get("TELEGRAM_TOKEN", "").strip()
    if not token:
        print(
            "error: TELEGRAM_TOKEN is not set; create a bot with @BotFather and export its token.",
            file=sys.stderr,
        )
        return 2
    api_url = env.get("TELEGRAM_API_URL", "").strip() or None
    problem = asyncio.run(_run(args, token, api_url))
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
