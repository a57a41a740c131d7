"""A Discord bot answering through Ollama, with a console mode and a self-contained demo.

Run ``python -m examples.discord_bot --help``; see ``README.md`` beside this file.
"""

from .app import create_bot

__all__ = ["create_bot"]
