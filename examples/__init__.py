"""Runnable examples for botperf (``python -m examples.discord_bot``, ``examples.telegram_bot``)."""
