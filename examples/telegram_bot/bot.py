"""The Telegram adapter: aiogram 3 in front of a `ChatCore`. Kept thin, like the Discord one.

The bot answers every message in a private chat and, in groups, the messages that mention it
(``@its_username``) or reply to one of its messages; ``/start`` greets, ``/reset`` forgets the
chat's conversation. It shows "typing..." until the first words arrive, then streams the reply
through botperf's `ReplyStreamer` (``examples/chatcore/streaming.py``): one message edited as
the model writes, paced per chat by a shared `EditPacer` (Telegram allows about one message a
second in a chat and 20 a minute in a group, so groups get a slower pacer), waiting out
``TelegramRetryAfter`` (HTTP 429 with ``parameters.retry_after``), continuing in new messages
beyond Telegram's 4,096 characters. Replies are plain text: a model's Markdown is rarely
valid Telegram Markdown, and a parse error would lose the reply.

aiogram runs on asyncio only, so this module does too; the core uses anyio and does not care.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, final

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.filters import Command, CommandStart
from aiogram.types import BotCommand, Message, User
from aiogram.utils.chat_action import ChatActionSender

from botperf import EditPacer
from examples.chatcore.protocol import ChatCore
from examples.chatcore.streaming import stream_reply

__all__ = [
    "SYSTEM_PROMPT",
    "TELEGRAM_LIMIT",
    "TelegramChatBot",
    "make_bot",
    "should_answer",
    "strip_mention",
    "telegram_retry_after",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

TELEGRAM_LIMIT = 4096
"""The most characters Telegram accepts in one message."""

SHUTDOWN_GRACE = 10.0
"""Seconds the replies in progress get to finish when the bot stops."""

SYSTEM_PROMPT = (
    "You are a helpful assistant in a Telegram chat. Answer briefly and clearly, in plain "
    "text (Telegram shows the reply as typed)."
)

GREETING = (
    "Hello! Ask me anything. In a group, mention me or reply to one of my messages. "
    "/reset makes me forget this chat's conversation."
)

COMMANDS = [
    BotCommand(command="start", description="What this bot does"),
    BotCommand(command="reset", description="Forget this chat's conversation"),
]


def make_bot(token: str, *, api_url: str | None = None) -> Bot:
    """An aiogram `Bot` for ``token`` on Telegram's Bot API, or on the server at ``api_url``.

    ``api_url`` is a Bot API server's base URL (a self-hosted ``telegram-bot-api``, or a
    test server), as ``TelegramAPIServer.from_base`` takes it.

    Raises:
        aiogram.utils.token.TokenValidationError: If ``token`` does not look like a token.
    """
    if api_url is None:
        return Bot(token)
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))


def should_answer(message: Message, me: User) -> bool:
    """Whether the bot answers ``message``: never a bot's; in private chats always; in
    groups when it mentions ``@me`` or replies to one of ``me``'s messages."""
    author = message.from_user
    if author is None or author.is_bot or not message.text:
        return False
    if message.chat.type == "private":
        return True
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True
    return _mentions(message, me)


def _mentions(message: Message, me: User) -> bool:
    text = message.text or ""
    handle = None if me.username is None else f"@{me.username}".casefold()
    for entity in message.entities or ():
        if entity.type == "mention" and entity.extract_from(text).casefold() == handle:
            return True
        if entity.type == "text_mention" and entity.user is not None and entity.user.id == me.id:
            return True
    return False


def strip_mention(text: str, username: str | None) -> str:
    """Remove the bot's ``@username`` (any case) from a message's text."""
    if not username:
        return text.strip()
    handle = f"@{username}".casefold()
    words = [word for word in text.split(" ") if word.casefold().rstrip(",:") != handle]
    return " ".join(words).strip()


def telegram_retry_after(exc: Exception) -> float | None:
    """The seconds to wait if ``exc`` is Telegram's flood control (`TelegramRetryAfter`)."""
    if isinstance(exc, TelegramRetryAfter):
        return float(exc.retry_after)
    return None


@final
class TelegramChatBot:
    """A Telegram bot that hands every question it should answer to ``core``.

    Run it with ``await chat_bot.run()``, which starts the core, long-polls Telegram until
    SIGINT/SIGTERM (or `stop`), then closes the core (flushing its metrics).

    Args:
        core: The chat core; closed by `run` when polling ends.
        bot: The aiogram `Bot` (see `make_bot`); its session is closed by `run`.
        pacer: Paces edits in private chats, shared by every reply (default one per second
            per chat, backing off to one per 30 s after repeated 429s).
        group_pacer: Paces edits in groups (default one per 3 s per group: Telegram allows a
            bot about 20 messages a minute in a group).
    """

    def __init__(
        self,
        core: ChatCore,
        *,
        bot: Bot,
        pacer: EditPacer | None = None,
        group_pacer: EditPacer | None = None,
    ) -> None:
        self.core = core
        self.bot = bot
        self.pacer = pacer if pacer is not None else EditPacer(interval=1.0, max_interval=30.0)
        self.group_pacer = (
            group_pacer if group_pacer is not None else EditPacer(interval=3.0, max_interval=60.0)
        )
        self.router = Router(name="chat")
        self.router.message.register(self.on_start, CommandStart())
        self.router.message.register(self.on_reset, Command("reset"))
        self.router.message.register(self.on_message, F.text)
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(self.router)
        # aiogram closes the bot's session once polling stops, whatever handlers still
        # run: the replies in progress get to finish first (see _finish_replies).
        self._replying: set[asyncio.Task[Any]] = set()
        self.dispatcher.shutdown.register(self._finish_replies)

    async def on_start(self, message: Message) -> None:
        await message.answer(GREETING)

    async def on_reset(self, message: Message) -> None:
        await self.core.reset(message.chat.id)
        await message.answer("History cleared.")

    async def on_message(self, message: Message) -> None:
        me = await self.bot.me()
        if not should_answer(message, me):
            return
        text = strip_mention(message.text or "", me.username)
        if not text:
            await message.reply("Ask me something after the mention.")
            return
        replied = False

        async def send(content: str) -> Message:
            nonlocal replied
            if replied:
                return await message.answer(content)
            replied = True
            return await message.reply(content)

        async def edit(sent: Message, content: str) -> None:
            await sent.edit_text(content)

        author = message.from_user
        await self.answer(
            message.chat.id,
            str(author.id if author is not None else message.chat.id),
            text,
            send,
            edit,
            ChatActionSender.typing(bot=self.bot, chat_id=message.chat.id),
            group=message.chat.type != "private",
        )

    async def answer(
        self,
        chat_id: int,
        author: str,
        text: str,
        send: Callable[[str], Awaitable[T]],
        edit: Callable[[T, str], Awaitable[None]],
        typing: AbstractAsyncContextManager[Any] | None,
        *,
        group: bool = False,
    ) -> None:
        """Stream the core's reply to ``text`` into the chat through ``send`` and ``edit``.

        Delivery failures (a 429 asking to wait over a minute included) are logged, never
        raised: one lost reply must not stop the bot. When the bot stops, a reply in
        progress is finished (for up to `SHUTDOWN_GRACE` seconds) before the session closes.
        """
        task = asyncio.current_task()
        if task is not None:  # outside a task, there is nothing for the shutdown hook to wait for
            self._replying.add(task)
        try:
            await stream_reply(
                self.core.stream(chat_id, author, text),
                send,
                edit,
                target=chat_id,
                pacer=self.group_pacer if group else self.pacer,
                max_length=TELEGRAM_LIMIT,
                retry_after=telegram_retry_after,
                typing=typing,
            )
        except TelegramAPIError:
            logger.exception("chat %s: could not deliver the reply", chat_id)
        finally:
            if task is not None:
                self._replying.discard(task)

    async def run(self, *, handle_signals: bool = True, polling_timeout: int = 10) -> None:
        """Start the core, long-poll Telegram until a signal or `stop`, close the core.

        The bot's commands are registered with Telegram first (the menu of ``/start`` and
        ``/reset``), if Telegram lets it; the bot's session is closed at the end.
        """
        await self.core.start()
        try:
            try:
                await self.bot.set_my_commands(COMMANDS)
            except TelegramAPIError as error:
                logger.warning("could not register the bot's commands: %s", error)
            await self.dispatcher.start_polling(
                self.bot, handle_signals=handle_signals, polling_timeout=polling_timeout
            )
        finally:
            try:
                await self.core.aclose()
            finally:
                await self.bot.session.close()  # idempotent: polling closed it already

    async def _finish_replies(self) -> None:
        """The dispatcher's shutdown hook: wait for the replies in progress, within a grace."""
        running = [task for task in self._replying if task is not asyncio.current_task()]
        if not running:
            return
        _, unfinished = await asyncio.wait(running, timeout=SHUTDOWN_GRACE)
        if unfinished:
            logger.warning(
                "stopping with %d replies unfinished after %s s; they are cut off",
                len(unfinished),
                SHUTDOWN_GRACE,
            )

    async def stop(self) -> None:
        """Stop polling (`run` then closes the core and returns)."""
        await self.dispatcher.stop_polling()
