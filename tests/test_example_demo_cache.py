"""The demo's prompt-cache round: one conversation, sliding against stable, on a fake Ollama.

The round counts tokens from the fake server's model of Ollama's prompt cache; nothing here
depends on timing (each turn's summary is pinned before the next message).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from examples.discord_bot.__main__ import main
from examples.discord_bot.demo import (
    DemoConfig,
    cache_conversation,
    cache_round,
    report,
    run_demo,
)

# Short replies and 16 turns: "stable" trims twice, "sliding" on most turns once full.
CACHE = DemoConfig(reply_tokens=8, cache_turns=16)
# The burst as small as it goes, around the round.
TINY = replace(
    CACHE,
    channels=2,
    rounds=1,
    tracks=1,
    max_channels=2,
    time_to_first_token=0.0,
    token_delay=0.0,
    arrival_spread=0.0,
    late_joiners=0,
    flood=0,
)


@pytest.fixture
def metrics_path(tmp_path: Path) -> Path:
    return tmp_path / "metrics.jsonl"


@pytest.mark.anyio
async def test_stable_evaluates_fewer_prompt_tokens_than_sliding() -> None:
    cache = await cache_round(CACHE)
    assert cache is not None
    sliding, stable = cache.sliding, cache.stable
    assert (sliding.trim, stable.trim) == ("sliding", "stable")
    assert 0 < stable.evaluated < sliding.evaluated
    assert cache.ratio == sliding.evaluated / stable.evaluated > 1
    # Each mode evaluates part of what it sends: the rest was in the server's cache.
    assert stable.evaluated < stable.sent
    assert sliding.evaluated < sliding.sent
    # The budget trimmed the conversation several times, each trim summarized once.
    assert 2 <= stable.summaries < sliding.summaries
    assert stable.requests == CACHE.cache_turns + stable.summaries
    assert sliding.requests == CACHE.cache_turns + sliding.summaries
    for run in (sliding, stable):
        assert (run.failed, run.summary_errors) == (0, 0)
        assert 0 < run.summary_evaluated < run.evaluated
    # The price of stable: less context on average.
    assert 0 < stable.mean_history < sliding.mean_history
    assert 0 < stable.mean_prompt < sliding.mean_prompt


@pytest.mark.anyio
async def test_the_round_depends_on_no_timing() -> None:
    config = replace(CACHE, cache_turns=8)
    assert await cache_round(config) == await cache_round(config)


def test_the_conversation_is_long_and_deterministic() -> None:
    texts = cache_conversation(CACHE)
    assert len(texts) == CACHE.cache_turns
    assert all(40 <= len(text.split(" My setup: ")[1].split()) <= 120 for text in texts)
    assert cache_conversation(CACHE) == texts
    assert cache_conversation(replace(CACHE, cache_turns=0)) == []


@pytest.mark.anyio
async def test_the_table_shows_the_rounds_measured_numbers(metrics_path: Path) -> None:
    outcome = await run_demo(TINY, metrics_path, progress=None)
    cache = outcome.cache
    assert cache is not None
    sliding, stable = cache.sliding, cache.stable
    table = report(outcome)
    assert re.search(
        rf"^  prompt tokens evaluated, sliding / stable +{sliding.evaluated} / "
        rf"{stable.evaluated}  {cache.ratio:.1f}x fewer with stable: 16 turns on one channel, ",
        table,
        re.M,
    )
    assert re.search(
        rf"^  prompt tokens sent, sliding / stable +{sliding.sent} / {stable.sent}  evaluated "
        rf"{sliding.evaluated / sliding.sent:.0%} / {stable.evaluated / stable.sent:.0%} ",
        table,
        re.M,
    )
    assert re.search(
        rf"^  summaries made, sliding / stable +{sliding.summaries} / {stable.summaries}  "
        f"one per trim, in the background; their calls evaluated {sliding.summary_evaluated} / "
        f"{stable.summary_evaluated} of the tokens above$",
        table,
        re.M,
    )
    assert re.search(
        rf"^  mean context kept, sliding / stable +{sliding.mean_history:.1f} / "
        rf"{stable.mean_history:.1f}  messages of history per reply \({sliding.mean_prompt:.0f} "
        rf"/ {stable.mean_prompt:.0f} prompt tokens\)$",
        table,
        re.M,
    )
    # The burst's own figures are not mixed with the round's.
    assert outcome.messages == TINY.messages == 2
    assert outcome.llm_calls == outcome.core.dedup.stats.executions


@pytest.mark.anyio
async def test_no_cache_turns_skips_the_round(metrics_path: Path) -> None:
    config = replace(TINY, cache_turns=0)
    assert await cache_round(config) is None
    outcome = await run_demo(config, metrics_path, progress=None)
    assert outcome.cache is None
    assert "sliding / stable" not in report(outcome)


def test_config_rejects_negative_cache_turns() -> None:
    with pytest.raises(ValueError, match="cache_turns must be >= 0, got -1"):
        DemoConfig(cache_turns=-1)


@pytest.mark.parametrize(
    ("option", "error"),
    [
        ("--cache-turns=-1", "argument --cache-turns: must be >= 0, got -1"),
        ("--cache-turns=many", "argument --cache-turns: not a number: 'many'"),
    ],
)
def test_command_line_refuses_a_bad_number_of_cache_turns(
    option: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--demo", option])
    assert exited.value.code == 2
    assert error in capsys.readouterr().err
