"""The example bot's ``/metrics`` and its Grafana dashboard, scraped over real HTTP.

A core answers a few messages through ``FakeOllama`` (one of them refused by its rate
limiter), then its `MetricsServer` is scraped on 127.0.0.1 with an HTTP client and the text
parsed with prometheus_client's own parser. The dashboard test checks every selector of
every query in ``examples/grafana/botperf.json`` against that scrape: the metric exists,
and a sample carries each label value the query asks for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from botperf import RateLimiter
from examples.chatcore.core import BotCore
from examples.chatcore.fake_ollama import FakeOllama
from examples.chatcore.llm import OllamaChat
from examples.chatcore.monitoring import NAMESPACE, OBJECT_NAMES, MetricsServer, core_collector
from examples.discord_bot.app import parse_args, serve_metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "examples" / "grafana" / "botperf.json"

# Labels Prometheus adds to every series it scrapes, which no exporter sets.
TARGET_LABELS = {"instance", "job"}

# PromQL words that are not metric names.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "on", "ignoring", "group_left", "by"}


@pytest.fixture
async def answered_core(fake_ollama: FakeOllama, tmp_path: Path) -> BotCore:
    """A closed core that answered three messages, evicting two channels, and refused one."""
    limiter = RateLimiter(1, 60.0)
    core = BotCore(
        OllamaChat(host=fake_ollama.url),
        metrics_path=tmp_path / "metrics.jsonl",
        max_channels=1,
        rate_limiter=limiter,
    )
    async with core:
        await core.handle(1, "ann", "What is the GIL?")
        await core.handle(2, "bob", "What is a slot?")  # evicts channel 1
        await core.handle(1, "ann", "And a thread?")  # refused
        await core.handle(3, "cy", "What is a slot?")
    return core


async def scrape(url: str) -> list[Sample]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: list[Sample], metric: str, /, **labels: str) -> float:
    found = [s.value for s in samples if s.name == metric and labels.items() <= s.labels.items()]
    assert len(found) == 1, (metric, labels, found)
    return found[0]


@pytest.mark.anyio
async def test_metrics_are_served_over_http_for_every_primitive(answered_core: BotCore) -> None:
    core = answered_core
    with MetricsServer(core, 0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        samples = await scrape(server.url)
    dedup, history, writer = core.dedup.stats, core.history.stats, core.metrics.stats
    assert core.rate_limiter is not None
    limiter, slots = core.rate_limiter.stats, core.slots.stats
    assert value(samples, "mybot_dedup_calls_total", name="llm") == dedup.calls == 3
    assert value(samples, "mybot_dedup_executions_total", name="llm") == dedup.executions
    assert value(samples, "mybot_history_evictions_total", name="chat") == history.evictions == 2
    assert value(samples, "mybot_writer_recorded_total", name="events") == writer.recorded
    assert value(samples, "mybot_writer_dropped_total", name="events") == writer.dropped == 0
    assert value(samples, "mybot_rate_limiter_limited_total", name="users") == limiter.limited == 1
    assert value(samples, "mybot_rate_limiter_admitted_total", name="users") == limiter.admitted
    assert value(samples, "mybot_fair_limiter_admitted_total", name="ollama") == slots.admitted
    assert value(samples, "mybot_fair_limiter_in_use", name="ollama") == 0
    summary = core.latency.summary()
    for timer in ("reply", "llm.wait", "ollama.chat", "llm.slot", "llm.first_token", "llm.token"):
        count = value(samples, "mybot_latency_seconds_count", name="latency", timer=timer)
        assert count == summary[timer].count > 0
        p99 = value(samples, "mybot_latency_seconds", timer=timer, quantile="0.99")
        assert p99 == summary[timer].p99


@pytest.mark.anyio
async def test_the_command_line_serves_metrics_on_127_0_0_1(
    answered_core: BotCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_PORT", "0")
    args = parse_args([])
    assert (args.metrics_port, args.metrics_host) == (0, "127.0.0.1")
    server = serve_metrics(answered_core, args)
    assert server is not None
    try:
        samples = await scrape(server.url)
    finally:
        server.close()
    assert value(samples, "mybot_dedup_calls_total", name="llm") == 3
    monkeypatch.delenv("METRICS_PORT")
    assert serve_metrics(answered_core, parse_args(["--metrics-host", "::1"])) is None


def test_options_come_from_the_command_line_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("BOT_RATE_LIMIT", "OLLAMA_SLOTS", "METRICS_PORT", "METRICS_HOST"):
        monkeypatch.delenv(variable, raising=False)
    args = parse_args([])
    assert (args.rate_limit, args.llm_slots, args.metrics_port) == (10.0, 2, None)
    monkeypatch.setenv("BOT_RATE_LIMIT", "0")
    monkeypatch.setenv("OLLAMA_SLOTS", "4")
    monkeypatch.setenv("METRICS_PORT", "9464")
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    args = parse_args([])
    assert (args.rate_limit, args.llm_slots, args.metrics_port) == (0.0, 4, 9464)
    assert args.metrics_host == "0.0.0.0"
    args = parse_args(["--rate-limit", "3", "--llm-slots", "1", "--metrics-port", "9100"])
    assert (args.rate_limit, args.llm_slots, args.metrics_port) == (3.0, 1, 9100)


@pytest.mark.parametrize(
    ("variable", "text"),
    [("BOT_RATE_LIMIT", "-1"), ("OLLAMA_SLOTS", "0"), ("METRICS_PORT", "70000")],
)
def test_a_bad_environment_variable_is_named_in_one_line(
    variable: str, text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, text)
    with pytest.raises(SystemExit):
        parse_args([])
    assert f"error: {variable}={text}: " in capsys.readouterr().err


def test_the_collector_names_the_cores_objects_as_the_dashboard_does() -> None:
    assert NAMESPACE == "mybot"
    assert set(OBJECT_NAMES.values()) == {"llm", "chat", "events", "latency", "users", "ollama"}


@pytest.mark.anyio
async def test_a_core_without_rate_limiter_exports_the_rest(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    async with BotCore(OllamaChat(host=fake_ollama.url), metrics_path=tmp_path / "m.jsonl") as core:
        await core.handle(1, "ann", "hi?")
    families = {family.name for family in core_collector(core).collect()}
    assert "mybot_rate_limiter_limited" not in families
    assert {"mybot_dedup_calls", "mybot_fair_limiter_admitted", "mybot_latency_seconds"} <= families


# The dashboard.


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every PromQL query of the dashboard, with where it is: panel targets and variables."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert match, query
            yield f"variable {variable['name']!r}", match[1]


def selectors(expr: str) -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    """The ``(metric, {label: (operator, value)})`` selectors of a PromQL expression.

    Enough PromQL for the dashboard: range durations and grouping clauses are removed,
    then each name not followed by ``(`` (a function) is a metric, with its matchers.
    """
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?\s*(\()?", expr):
        name, _, matchers, call = match.groups()
        if call or name in KEYWORDS:
            continue
        found = re.findall(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"', matchers or "")
        yield name, {label: (operator, text) for label, operator, text in found}


def test_selectors_reads_promql() -> None:
    expr = (
        'sum(rate(a_total{name="x", instance=~"$i"}[$__rate_interval])) / '
        "max by (quantile) (b_seconds) + 1"
    )
    assert list(selectors(expr)) == [
        ("a_total", {"name": ("=", "x"), "instance": ("=~", "$i")}),
        ("b_seconds", {}),
    ]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    assert {variable["name"] for variable in dashboard["templating"]["list"]} == {
        "datasource",
        "instance",
    }
    titles = {panel["title"] for panel in panels}
    assert {
        "LLM calls made vs saved",
        "Reply latency",
        "Time to first token",
        "Tokens per second",
        "History evictions",
        "Events dropped",
        "Users limited",
    } <= titles


@pytest.mark.anyio
async def test_the_dashboard_queries_only_what_the_bot_exports(answered_core: BotCore) -> None:
    with MetricsServer(answered_core, 0) as server:
        samples = await scrape(server.url)
    exported = {sample.name for sample in samples}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    checked = 0
    for where, expr in queries(dashboard):
        for name, labels in selectors(expr):
            assert name in exported, f"{where}: {name} is not exported; {expr}"
            wanted = {}
            for label, (operator, text) in labels.items():
                if label in TARGET_LABELS:
                    continue
                assert operator == "=", f"{where}: {label}{operator} on a botperf label"
                wanted[label] = text
            matching = [s for s in samples if s.name == name and wanted.items() <= s.labels.items()]
            assert matching, f"{where}: no {name} sample has the labels {wanted}; {expr}"
            checked += 1
    assert checked >= 30
