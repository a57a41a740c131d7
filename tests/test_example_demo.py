"""Demo and console modes, and the command line of ``python -m examples.discord_bot``."""

from __future__ import annotations

import io
import math
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from concurrency import eventually
from prometheus_client.parser import text_string_to_metric_families

import examples.discord_bot.demo
from botperf import read_metrics
from botperf._cli import main as botperf_main
from examples.chatcore.console import run_console
from examples.chatcore.core import BotCore
from examples.chatcore.fake_ollama import FakeOllama, canned_reply
from examples.chatcore.llm import ChatResult, ChatStream, OllamaChat
from examples.discord_bot.__main__ import main
from examples.discord_bot.demo import (
    AFTER_FLOOD_QUESTIONS,
    FLOOD_PREFIX,
    MID_STREAM_QUESTION,
    DemoConfig,
    ProgressBar,
    Row,
    format_table,
    mid_stream_round,
    percentile,
    plan,
    report,
    run_demo,
    scrape_sample,
)

ROOT = Path(__file__).resolve().parent.parent
FAST = DemoConfig(
    channels=8,
    rounds=2,
    tracks=2,
    max_channels=6,
    time_to_first_token=0.01,
    token_delay=0.001,
    reply_tokens=8,
    first_wave=2,
    late_joiners=3,
    flood=15,
    flood_users=6,
    flood_questions=3,
    cache_turns=0,  # tests/test_example_demo_cache.py plays the prompt-cache round
)
MESSAGES = 8 * 2 + 2 + 3 + 15 + 6
ANSWERED = MESSAGES - (15 - 10)  # the flooder's messages beyond the rate limit's burst of 10

pytestmark = pytest.mark.filterwarnings(
    # See tests/test_example_core.py: trio reports the ollama client's generators on errors.
    r"ignore:Async generator 'http(x|core)\..*' was garbage collected:ResourceWarning"
)


Hold = Callable[[Sequence[Mapping[str, str]], int], Awaitable[None]]


class HeldStream:
    """A :class:`ChatStream` that awaits ``hold(messages, piece)`` before each piece."""

    def __init__(self, stream: ChatStream, messages: Sequence[Mapping[str, str]], hold: Hold):
        self._stream = stream
        self._messages = messages
        self._hold = hold
        self._pieces = 0

    @property
    def result(self) -> ChatResult:
        return self._stream.result

    async def __aenter__(self) -> HeldStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stream.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        await self._hold(self._messages, self._pieces)
        piece = await self._stream.__anext__()
        self._pieces += 1
        return piece


class HeldChat:
    """The demo's :class:`OllamaChat`, its replies held by ``hold`` (see :func:`hold_demo`)."""

    def __init__(self, llm: OllamaChat, hold: Hold) -> None:
        self._llm = llm
        self._hold = hold

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def stream(self, messages: Sequence[Mapping[str, str]]) -> HeldStream:
        return HeldStream(self._llm.stream(messages), messages, self._hold)


def hold_demo(monkeypatch: pytest.MonkeyPatch, config: DemoConfig) -> None:
    """Make ``run_demo(config)`` share its LLM calls whatever the machine's speed.

    The demo's messages share a call when they reach the Deduplicator while it runs; its
    timings (time to first token, token delay) only make that likely. Here each reply waits
    before its first words until every message of its round has reached the Deduplicator,
    and the mid-stream reply also after them until every late joiner has: a test of the
    sharing then depends on no timing, and still fails if the messages do not share.
    """
    cores: list[BotCore] = []

    async def calls_reach(count: int) -> None:
        await eventually(lambda: cores[0].dedup.stats.calls >= count)

    async def hold(messages: Sequence[Mapping[str, str]], piece: int) -> None:
        question = messages[-1]["content"]
        if question.startswith(FLOOD_PREFIX) or question in AFTER_FLOOD_QUESTIONS:
            return  # the flood round stages itself
        if question == MID_STREAM_QUESTION:
            before = config.channels * config.rounds + config.first_wave
            if piece <= 1:
                await calls_reach(before + config.late_joiners * piece)
        elif piece == 0:
            # Rounds come one after another, each of config.channels messages.
            calls = cores[0].dedup.stats.calls
            await calls_reach(math.ceil(calls / config.channels) * config.channels)

    def core(llm: OllamaChat, **options: Any) -> BotCore:
        cores.append(BotCore(HeldChat(llm, hold), **options))  # type: ignore[arg-type]
        return cores[-1]

    monkeypatch.setattr(examples.discord_bot.demo, "BotCore", core)


@pytest.fixture
def metrics_path(tmp_path: Path) -> Path:
    return tmp_path / "metrics.jsonl"


@pytest.mark.anyio
async def test_demo_answers_every_message(metrics_path: Path) -> None:
    progress = io.StringIO()
    outcome = await run_demo(FAST, metrics_path, progress=progress)
    assert outcome.messages == MESSAGES
    assert len(outcome.latencies) == len(outcome.first_words) == outcome.answered == ANSWERED
    assert outcome.failed == 0
    assert outcome.limited == MESSAGES - ANSWERED
    assert outcome.notices == 1
    assert progress.getvalue().endswith(f"{MESSAGES}/{MESSAGES} messages\n")
    assert f"  serving {outcome.metrics_url} while it runs\n" in progress.getvalue()


@pytest.mark.anyio
async def test_demo_makes_one_llm_call_per_conversation_and_round(
    metrics_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every channel held and all messages of a round at once: each track's channels share
    # one call per round.
    config = replace(FAST, max_channels=8, arrival_spread=0.0, late_joiners=0, flood=0)
    hold_demo(monkeypatch, config)
    outcome = await run_demo(config, metrics_path, progress=None)
    assert outcome.llm_calls == config.tracks * config.rounds
    assert outcome.core.history.stats.evictions == 0


@pytest.mark.anyio
async def test_demo_numbers_agree_with_each_other(
    metrics_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_demo(monkeypatch, FAST)  # some messages share a call, whatever the machine's speed
    outcome = await run_demo(FAST, metrics_path, progress=None)
    core = outcome.core
    dedup = core.dedup.stats
    assert outcome.llm_calls == dedup.executions < outcome.answered < outcome.messages
    assert dedup.calls == dedup.executions + dedup.shared == outcome.answered
    history = core.history.stats
    assert history.channels == FAST.max_channels
    assert history.evictions >= FAST.channels - FAST.max_channels
    writer = core.metrics.stats
    assert writer.recorded == writer.written == len(list(read_metrics(metrics_path)))
    assert 1 <= writer.batches < writer.written
    calls = [event for event in read_metrics(metrics_path) if event["event"] == "llm_call"]
    assert len(calls) == outcome.answered
    assert sum(not call["deduplicated"] for call in calls) == outcome.llm_calls
    names = [event["event"] for event in read_metrics(metrics_path)]
    assert names.count("message_in") == outcome.messages
    assert names.count("message_limited") == outcome.limited


@pytest.mark.anyio
async def test_late_joiners_of_a_streaming_reply_cost_no_llm_call(
    metrics_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(FAST, channels=2, rounds=1, arrival_spread=0.0, flood=0)
    hold_demo(monkeypatch, config)
    outcome = await run_demo(config, metrics_path, progress=None)
    assert (outcome.mid_stream_joins, outcome.mid_stream_calls) == (config.late_joiners, 0)
    assert outcome.llm_calls == outcome.core.dedup.stats.executions == 2 + 1
    assert re.search(
        r"^  late joiners \(mid-stream\) / extra LLM calls +3 / 0  joined a reply already "
        r"streaming to 2 channels \(Ollama server's count\)$",
        report(outcome),
        re.M,
    )


def test_the_mid_stream_round_asks_one_question_in_new_channels() -> None:
    messages = mid_stream_round(FAST)
    assert [m.late for m in messages] == [False] * 2 + [True] * 3
    assert {m.text for m in messages} == {MID_STREAM_QUESTION}
    tracked = {m.channel_id for round_ in plan(FAST) for m in round_}
    assert len({m.channel_id for m in messages} - tracked) == 5
    assert mid_stream_round(replace(FAST, late_joiners=0)) == []


@pytest.mark.anyio
async def test_report_shows_the_measured_numbers(metrics_path: Path) -> None:
    outcome = await run_demo(FAST, metrics_path, progress=None)
    calls = outcome.llm_calls
    saved = ANSWERED - calls
    stats = outcome.core.metrics.stats
    table = report(outcome)
    assert re.search(
        rf"^  replies ok / failed +{ANSWERED} / 0  \+ {MESSAGES - ANSWERED} refused by the "
        "rate limit$",
        table,
        re.M,
    )
    assert re.search(
        rf"^  LLM calls made +{calls} / {calls}  Ollama server's count / Deduplicator "
        "executions: they agree$",
        table,
        re.M,
    )
    assert re.search(rf"^  LLM calls saved +{saved} \({saved / ANSWERED:.0%}\) ", table, re.M)
    assert re.search(r"^  reply latency p50 / p99 +\d+ / \d+ ms ", table, re.M)
    assert re.search(r"^  first words p50 / p99 +\d+ / \d+ ms ", table, re.M)
    joins, extra = outcome.mid_stream_joins, outcome.mid_stream_calls
    assert re.search(
        rf"^  late joiners \(mid-stream\) / extra LLM calls +{joins} / {extra} ", table, re.M
    )
    held = outcome.core.history.stats
    assert re.search(
        rf"^  channels held / evicted +6 / {held.evictions}  HistoryStore, max_channels=6$",
        table,
        re.M,
    )
    assert re.search(
        rf"^  metric events recorded / written +{stats.recorded} / {stats.recorded} ", table, re.M
    )
    assert re.search(rf"^  disk writes +{stats.batches} ", table, re.M)


@pytest.mark.anyio
async def test_the_flood_is_limited_and_others_get_the_next_slots(metrics_path: Path) -> None:
    outcome = await run_demo(FAST, metrics_path, progress=None)
    # Burst of 10 admitted, the other 5 refused: one told to slow down, four ignored.
    assert (outcome.limited, outcome.notices, len(outcome.flooder_latencies)) == (5, 1, 10)
    assert len(outcome.others_latencies) == FAST.flood_users
    order = outcome.flood_order
    # Ten flood calls and one per question of the others (users asking alike share one).
    assert (order.count(True), order.count(False)) == (10, FAST.flood_questions)
    # The flooder's first calls held both slots and eight more queued before the others
    # asked; round-robin then gave the others the next slots but one, not the ninth on.
    assert order[: FAST.llm_slots] == (True,) * FAST.llm_slots
    last_other = max(i for i, flooder in enumerate(order) if not flooder)
    assert sum(order[:last_other]) <= FAST.llm_slots + 1
    table = report(outcome)
    assert re.search(
        r"^  flood: messages / limited +15 / 5  one user at once; RateLimiter 10/min: "
        r"1 'slow down' reply, 4 ignored$",
        table,
        re.M,
    )
    ahead = sum(order[:last_other])
    assert re.search(
        rf"^  flood: flooder's calls ahead of the others +{ahead} of 10  ", table, re.M
    )
    assert re.search(r"^  flood: other users' reply p50 / p99 +\d+ / \d+ ms  6 users", table, re.M)


@pytest.mark.anyio
async def test_the_report_shows_lines_of_a_real_scrape(metrics_path: Path) -> None:
    outcome = await run_demo(FAST, metrics_path, progress=None)
    assert outcome.metrics_url.startswith("http://127.0.0.1:")
    sample = scrape_sample(outcome.scrape)
    assert f"From {outcome.metrics_url} (scraped at the end of the run):" in report(outcome)
    assert all(f"    {line}" in report(outcome) for line in sample)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families("\n".join(sample) + "\n")
        for s in family.samples
    }
    core = outcome.core
    assert core.rate_limiter is not None
    assert values[("mybot_dedup_executions_total", (("name", "llm"),))] == outcome.llm_calls
    assert values[("mybot_dedup_shared_total", (("name", "llm"),))] == core.dedup.stats.shared
    limited = values[("mybot_rate_limiter_limited_total", (("name", "users"),))]
    assert limited == outcome.limited == core.rate_limiter.stats.limited
    admitted = values[("mybot_fair_limiter_admitted_total", (("name", "ollama"),))]
    assert admitted == outcome.llm_calls == core.slots.stats.admitted
    reply = (("name", "latency"), ("quantile", "0.99"), ("timer", "reply"))
    assert values[("mybot_latency_seconds", reply)] == core.latency.summary()["reply"].p99
    assert len(values) == 9


@pytest.mark.anyio
async def test_botperf_report_reads_the_demos_metrics(
    metrics_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_demo(FAST, metrics_path, progress=None)
    assert botperf_main(["report", str(metrics_path)]) == 0
    out = capsys.readouterr().out
    for name, count in (("llm_call", ANSWERED), ("message_in", MESSAGES), ("reply_out", ANSWERED)):
        assert f"{name}: {count} events" in out
    assert f"message_limited: {MESSAGES - ANSWERED} events" in out


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
    with pytest.raises(ValueError, match="max_channels must be >= 1"):
        DemoConfig(max_channels=0)
    with pytest.raises(ValueError, match="token_delay must be >= 0"):
        DemoConfig(token_delay=-1)
    with pytest.raises(ValueError, match="first_wave must be >= 1"):
        DemoConfig(first_wave=0)
    with pytest.raises(ValueError, match="late_joiners must be >= 0"):
        DemoConfig(late_joiners=-1)


@pytest.mark.anyio
async def test_console_chats_resets_and_quits(fake_ollama: FakeOllama, metrics_path: Path) -> None:
    core = BotCore(OllamaChat(host=fake_ollama.url), metrics_path=metrics_path)
    stdout = io.StringIO()
    stdin = io.StringIO("hello\n\n/reset\n/quit\nnever read\n")
    await run_console(core, stdin=stdin, stdout=stdout)
    assert canned_reply("hello") in stdout.getvalue()
    assert "(history cleared)" in stdout.getvalue()
    assert core.history.get(0) == ()
    assert fake_ollama.count("/api/chat") == 1
    assert len(list(read_metrics(metrics_path))) == core.metrics.stats.written == 4


@pytest.mark.anyio
async def test_console_ends_at_end_of_input(fake_ollama: FakeOllama, metrics_path: Path) -> None:
    core = BotCore(OllamaChat(host=fake_ollama.url), metrics_path=metrics_path)
    await run_console(core, stdin=io.StringIO("hi\n"), stdout=io.StringIO())
    assert len(core.history.get(0)) == 2


def test_bot_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main([]) == 2
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_demo_runs_from_the_command_line(tmp_path: Path) -> None:
    metrics = tmp_path / "demo.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.discord_bot",
            "--demo",
            "--channels=6",
            "--rounds=1",
            "--max-channels=4",
            "--late-joiners=0",
            "--flood=0",
            "--cache-turns=3",
            f"--metrics={metrics}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "LLM calls made" in result.stdout
    assert re.search(r"^  channels held / evicted +4 / 2 ", result.stdout, re.M)
    assert re.search(
        r"^  prompt tokens evaluated, sliding / stable +\d+ / \d+  [0-9.]+x fewer with stable: "
        "3 turns on one channel",
        result.stdout,
        re.M,
    )
    assert "prompt-cache round: 3 turns on one channel" in result.stderr
    assert result.stdout.endswith(f" -m botperf report {metrics}\n")
    assert "6/6 messages" in result.stderr
    assert re.search(
        r"^  serving http://127\.0\.0\.1:\d+/metrics while it runs$", result.stderr, re.M
    )
    assert "mybot_dedup_executions_total{" in result.stdout
    assert metrics.is_file()
    # The command the demo prints runs as printed, from where the demo ran.
    printed = shlex.split(result.stdout.splitlines()[-1])
    summary = subprocess.run(printed, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "llm_call: 6 events" in summary.stdout


@pytest.mark.parametrize(
    "option",
    ["--channels=0", "--rounds=-1", "--timeout=abc", "--late-joiners=-1", "--cache-turns=-1"],
)
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
