"""A Telegram bot (aiogram 3) answering through Ollama, on the same core as the Discord bot.

Run ``python -m examples.telegram_bot --help``; see ``README.md`` beside this file.
"""

from .bot import TelegramChatBot, make_bot

__all__ = ["TelegramChatBot", "make_bot"]
