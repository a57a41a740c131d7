"""The framework-neutral core both example bots share: history, deduplicated streaming through
Ollama, metrics, a console front end, and a fake Ollama server for demos and tests.

The front ends (``examples.discord_bot``, ``examples.telegram_bot``) only see `ChatCore`
(``protocol.py``); ``core.BotCore`` is the implementation on botperf.
"""
