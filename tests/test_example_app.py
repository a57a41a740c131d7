"""`examples.discord_bot.create_bot`: the bot as the command line builds it, not started."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from examples.discord_bot import create_bot
from examples.discord_bot.__main__ import main
from examples.discord_bot.bot import ChatBot


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DISCORD_GUILD_ID", "OLLAMA_HOST", "OLLAMA_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # discord.py runs on asyncio only
async def test_create_bot_reads_the_command_line_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_GUILD_ID", "1234")
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("OLLAMA_MODEL", "tiny")
    metrics = tmp_path / "bot.jsonl"
    bot = create_bot(["--max-channels", "7", "--metrics", str(metrics), "--timeout", "3"])
    assert isinstance(bot, ChatBot)
    assert bot.guild_id == 1234
    assert bot.core.llm.host == "http://127.0.0.1:9"
    assert bot.core.llm.model == "tiny"
    for channel in range(8):
        bot.core.history.append(channel, "user", "hello")
    assert len(bot.core.history) == 7  # --max-channels
    assert bot.core.metrics.sink.path == str(metrics)
    assert bot.user is None  # not logged in
    assert not bot.is_ready()
    assert bot.intents.message_content
    await bot.core.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_create_bot_takes_the_intents_it_is_given(tmp_path: Path) -> None:
    intents = discord.Intents.none()
    bot = create_bot(["--metrics", str(tmp_path / "m.jsonl")], intents=intents)
    assert bot.intents == intents
    assert bot.guild_id is None
    await bot.core.aclose()


@pytest.mark.parametrize("mode", ["--demo", "--console"])
def test_create_bot_refuses_the_other_modes(mode: str) -> None:
    with pytest.raises(ValueError, match="builds the Discord bot"):
        create_bot([mode])


def test_create_bot_refuses_a_guild_id_that_is_not_a_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_GUILD_ID", "my-server")
    with pytest.raises(ValueError, match="DISCORD_GUILD_ID must be a server's numeric ID"):
        create_bot([])


def test_the_command_line_reports_a_bad_guild_id_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "not-used")
    monkeypatch.setenv("DISCORD_GUILD_ID", "my-server")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "DISCORD_GUILD_ID must be a server's numeric ID" in err
