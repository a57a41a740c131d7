"""The Discord adapter: discord.py 2.x in front of a `ChatCore`. Kept thin.

The bot answers when it is mentioned or spoken to in a DM, and through the ``/ask`` and
``/reset`` slash commands. It shows the typing indicator until the first words arrive, then
streams the reply by editing its message through botperf's `ReplyStreamer` (paced per
channel by one `EditPacer` shared by every reply, backing off on HTTP 429), continuing in new
messages beyond 2,000 characters without breaking code blocks. It ignores other bots and never
pings anyone (``AllowedMentions.none()``).

discord.py runs on asyncio only, so this module does too; the core it drives uses anyio and
does not care. `run_bot` starts the core, stops cleanly on SIGINT and SIGTERM and
awaits ``core.aclose()`` (which flushes the metrics) before returning.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, final

import discord
from discord import app_commands
from discord.ext import commands

from botperf import EditPacer
from examples.chatcore.protocol import ChatCore
from examples.chatcore.streaming import stream_reply

__all__ = [
    "DISCORD_LIMIT",
    "ChatBot",
    "ChatCommands",
    "discord_retry_after",
    "run_bot",
    "should_answer",
    "strip_mention",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DISCORD_LIMIT = 2000
"""The most characters Discord accepts in one message."""


def should_answer(
    *, author_id: int, author_is_bot: bool, bot_id: int, in_dm: bool, mentioned_ids: Collection[int]
) -> bool:
    """Whether the bot answers a message: never to a bot (itself included), else in DMs or when
    mentioned by name (``@everyone`` does not count)."""
    if author_is_bot or author_id == bot_id:
        return False
    return in_dm or bot_id in mentioned_ids


def strip_mention(content: str, bot_id: int) -> str:
    """Remove the bot's own mentions (``<@id>`` and the older ``<@!id>``) from a message."""
    return re.sub(rf"<@!?{bot_id}>", " ", content).strip()


def discord_retry_after(exc: Exception) -> float | None:
    """The seconds to wait if ``exc`` is one of discord.py's forms of HTTP 429, else ``None``.

    discord.py retries most 429s itself; what reaches the bot is a 429 it would not wait for
    (``discord.RateLimited``, beyond ``max_ratelimit_timeout``, with its ``retry_after``) or
    one it gave up on (``discord.HTTPException`` with status 429, whose ``Retry-After``
    header is read; 0.0 when it has none, leaving the pacer's doubled interval to decide).
    """
    if isinstance(exc, discord.RateLimited):
        return exc.retry_after
    if isinstance(exc, discord.HTTPException) and exc.status == 429:
        try:
            return max(float(exc.response.headers.get("Retry-After", "")), 0.0)
        except (AttributeError, TypeError, ValueError):
            return 0.0
    return None


@final
class ChatBot(commands.Bot):
    """A discord.py bot that hands every question to ``core``.

    Its slash commands live in the `ChatCommands` cog, added by `setup_hook`.

    Args:
        core: The chat core; closed by `close`.
        pacer: Paces message edits per channel, shared by every reply (default: one edit
            per second per channel, backing off to one per 30 s after repeated 429s).
        guild_id: Sync the slash commands to this guild only (instant, for testing); by
            default they are synced globally.
        sync_commands: Sync the slash commands with Discord at start-up.
        intents: The gateway intents; by default `discord.Intents.default()` with
            `message_content`, which the bot needs to read the questions it is asked.
    """

    def __init__(
        self,
        core: ChatCore,
        *,
        pacer: EditPacer | None = None,
        guild_id: int | None = None,
        sync_commands: bool = True,
        intents: discord.Intents | None = None,
    ) -> None:
        if intents is None:
            intents = discord.Intents.default()
            intents.message_content = True  # privileged: enable it in the Developer Portal too
        super().__init__(
            # Only slash commands and mentions are used; prefix commands are never processed.
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            max_ratelimit_timeout=30.0,
        )
        self.core = core
        self.pacer = pacer if pacer is not None else EditPacer(interval=1.0, max_interval=30.0)
        self.guild_id = guild_id
        self.sync_commands = sync_commands
        self._core_closed = False

    async def setup_hook(self) -> None:
        await self.add_cog(ChatCommands(self))
        if not self.sync_commands:
            return
        if self.guild_id is None:
            await self.tree.sync()
        else:
            guild = discord.Object(id=self.guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        logger.info("logged in as %s (%s)", self.user, getattr(self.user, "id", "?"))

    async def on_message(self, message: discord.Message) -> None:
        me = self.user
        if me is None or not should_answer(
            author_id=message.author.id,
            author_is_bot=message.author.bot,
            bot_id=me.id,
            in_dm=message.guild is None,
            mentioned_ids={user.id for user in message.mentions},
        ):
            return
        text = strip_mention(message.content, me.id)
        if not text:
            await message.reply("Ask me something after the mention.", mention_author=False)
            return
        replied = False

        async def send(content: str) -> discord.Message:
            nonlocal replied
            if replied:
                return await message.channel.send(content)
            replied = True
            return await message.reply(content, mention_author=False)

        async def edit(sent: discord.Message, content: str) -> None:
            await sent.edit(content=content)

        await self.answer(
            message.channel.id, str(message.author), text, send, edit, message.channel.typing()
        )

    async def answer(
        self,
        channel_id: int,
        author: str,
        text: str,
        send: Callable[[str], Awaitable[T]],
        edit: Callable[[T, str], Awaitable[None]],
        typing: AbstractAsyncContextManager[Any] | None,
    ) -> None:
        """Stream the core's reply to ``text`` into Discord through ``send`` and ``edit``.

        ``typing`` (the channel's typing indicator, if any) is held until the first piece
        arrives (see `stream_reply`); a stream with no piece sends nothing (the core streams
        a placeholder for an empty reply). Delivery failures, a 429 asking to wait over a
        minute included, are logged, never raised: one lost reply must not stop the bot.
        """
        try:
            await stream_reply(
                self.core.stream(channel_id, author, text),
                send,
                edit,
                target=channel_id,
                pacer=self.pacer,
                max_length=DISCORD_LIMIT,
                retry_after=discord_retry_after,
                typing=typing,
            )
        except (discord.HTTPException, discord.RateLimited):
            logger.exception("channel %s: could not deliver the reply", channel_id)

    async def close(self) -> None:
        """Disconnect from Discord, then close the core (flushing its metrics), once."""
        try:
            await super().close()
        finally:
            if not self._core_closed:
                self._core_closed = True
                await self.core.aclose()


@final
class ChatCommands(commands.Cog):
    """The `/ask` and `/reset` slash commands of a `ChatBot`."""

    def __init__(self, bot: ChatBot) -> None:
        self.bot = bot

    @app_commands.command(name="ask", description="Ask the model a question")
    @app_commands.describe(question="What to ask")
    async def ask(self, interaction: discord.Interaction[ChatBot], question: str) -> None:
        await interaction.response.defer(thinking=True)
        channel_id = interaction.channel_id or interaction.user.id

        async def send(content: str) -> discord.WebhookMessage:
            return await interaction.followup.send(content, wait=True)

        async def edit(message: discord.WebhookMessage, content: str) -> None:
            await message.edit(content=content)

        await self.bot.answer(channel_id, str(interaction.user), question, send, edit, None)

    @app_commands.command(name="reset", description="Forget this channel's conversation")
    async def reset(self, interaction: discord.Interaction[ChatBot]) -> None:
        await self.bot.core.reset(interaction.channel_id or interaction.user.id)
        await interaction.response.send_message("History cleared.", ephemeral=True)


async def run_bot(bot: ChatBot, token: str) -> None:
    """Start the bot's core, run ``bot`` until Discord disconnects it or SIGINT/SIGTERM.

    Either way the bot is closed, which awaits ``core.aclose()`` (metrics flushed) before
    returning, in this task, the one that started the core. asyncio only, as discord.py is,
    hence asyncio's own signal handlers here.

    Raises:
        discord.LoginFailure: if Discord rejects the token.
        discord.PrivilegedIntentsRequired: if the Message Content intent is not enabled.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # run_bot always runs inside a task
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, task.cancel)
    try:
        await bot.core.start()
        async with bot:  # its exit closes the bot, then the core
            await bot.start(token)
    except asyncio.CancelledError:
        logger.info("signal received, shut down cleanly")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
