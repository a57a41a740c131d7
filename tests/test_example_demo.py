"""Demo and console modes, and the command line of ``python -m examples.discord_bot``."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from examples.discord_bot.__main__ import main
from examples.discord_bot.console import run_console
from examples.discord_bot.core import PlainCore
from examples.discord_bot.demo import (
    DemoConfig,
    DemoOutcome,
    ProgressBar,
    Row,
    format_table,
    percentile,
    plan,
    report,
    run_demo,
)
from examples.discord_bot.fake_ollama import FakeOllama, canned_reply
from examples.discord_bot.llm import OllamaChat

ROOT = Path(__file__).resolve().parent.parent
FAST = DemoConfig(
    channels=8, rounds=2, tracks=2, time_to_first_token=0.01, token_delay=0.001, reply_tokens=8
)


@pytest.mark.anyio
async def test_demo_measures_every_message_and_llm_call() -> None:
    progress = io.StringIO()
    outcome = await run_demo(FAST, PlainCore, progress=progress)
    assert outcome.messages == len(outcome.latencies) == 16
    assert outcome.failed == 0
    assert outcome.llm_calls == 16  # the phase-1 core makes one call per message
    assert progress.getvalue().endswith("16/16 messages\n")


@pytest.mark.anyio
async def test_report_shows_the_measured_numbers() -> None:
    outcome = await run_demo(FAST, PlainCore, progress=None)
    table = report(outcome)
    assert re.search(r"^  LLM calls made +16  counted by the Ollama server$", table, re.M)
    assert re.search(r"^  replies ok / failed +16 / 0$", table, re.M)
    assert re.search(r"^  reply latency p50 / p99 +\d+ / \d+ ms ", table, re.M)


@pytest.mark.anyio
async def test_report_takes_extra_sections() -> None:
    outcome = await run_demo(FAST, PlainCore, progress=None)

    def channels_rows(outcome: DemoOutcome[PlainCore]) -> list[Row]:
        held = sum(bool(outcome.core.history(channel)) for channel in range(1000, 1008))
        return [Row("channels with history", str(held))]

    table = report(outcome, [channels_rows])
    assert table == "  channels with history  8"


def test_plan_has_tracks_asking_the_same_question_at_once() -> None:
    rounds = plan(DemoConfig(channels=6, rounds=3, tracks=3))
    assert len(rounds) == 3
    for messages in rounds:
        assert len(messages) == 6
        by_track = {m.channel_id % 3: m.text for m in messages}
        assert all(by_track[m.channel_id % 3] == m.text for m in messages)
        assert len(set(by_track.values())) == 3
    assert plan(DemoConfig(channels=6, rounds=3, tracks=3)) == rounds


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0


def test_table_aligns_labels_and_values() -> None:
    table = format_table([Row("a", "1", "note"), Row("longer", "100")])
    assert table == "  a         1  note\n  longer  100"


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="channels must be >= 1"):
        DemoConfig(channels=0)
    with pytest.raises(ValueError, match="token_delay must be >= 0"):
        DemoConfig(token_delay=-1)


@pytest.mark.anyio
async def test_console_chats_resets_and_quits(fake_ollama: FakeOllama) -> None:
    core = PlainCore(OllamaChat(host=fake_ollama.url))
    stdout = io.StringIO()
    stdin = io.StringIO("hello\n\n/reset\n/quit\nnever read\n")
    await run_console(core, stdin=stdin, stdout=stdout)
    assert canned_reply("hello") in stdout.getvalue()
    assert "(history cleared)" in stdout.getvalue()
    assert core.history(0) == []
    assert fake_ollama.count("/api/chat") == 1


@pytest.mark.anyio
async def test_console_ends_at_end_of_input(fake_ollama: FakeOllama) -> None:
    core = PlainCore(OllamaChat(host=fake_ollama.url))
    await run_console(core, stdin=io.StringIO("hi\n"), stdout=io.StringIO())
    assert len(core.history(0)) == 2


def test_bot_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main([]) == 2
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_demo_runs_from_the_command_line() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.discord_bot",
            "--demo",
            "--channels",
            "6",
            "--rounds",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "LLM calls made" in result.stdout
    assert "6/6 messages" in result.stderr


@pytest.mark.parametrize("option", ["--channels=0", "--rounds=-1", "--timeout=abc"])
def test_command_line_rejects_non_positive_numbers(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--demo", option])
    assert "argument" in capsys.readouterr().err


def test_progress_bar_writes_a_line_per_quarter_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(8, stream=stream, width=4)
    for _ in range(8):
        bar.advance()
    bar.close()
    assert stream.getvalue().splitlines() == [
        "  [#...] 2/8 messages",
        "  [##..] 4/8 messages",
        "  [###.] 6/8 messages",
        "  [####] 8/8 messages",
    ]


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ProgressBar(2, stream=stream, width=2)
    bar.advance()
    bar.advance()
    bar.close()
    assert stream.getvalue() == "\r  [#.] 1/2 messages\r  [##] 2/2 messages\n"
