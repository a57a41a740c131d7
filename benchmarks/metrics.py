"""BatchMetricsWriter against the usual ways of writing one JSON line per metric event.

Every implementation writes the same events to a JSON-lines file in a temp directory,
in the same process, one after the other, several runs each. Each run has two passes:

- caller cost (ns per event, median): the calls are timed in chunks of ``CHUNK``; after
  each chunk, untimed, the implementation settles (a background thread or flusher
  catches up), as it would between bursts in a bot. The median chunk is reported, so
  the caller's cost is measured with a small buffer, not one of a million events;
- firehose, end to end (events/s): every event as fast as possible, timed from the first
  call until every event is in the file and the file is closed, background threads
  included; events kept (written) per second, so a pass that drops events is not
  credited for them;
- process CPU per event: `time.process_time` (every thread of the process: the caller,
  a flusher, a logging listener) over the firehose pass, divided by the events: what an
  event costs in all, recording, encoding and writing, wherever it is paid;
- write calls: batches written by BatchMetricsWriter (``stats.batches``) in the firehose
  pass; the per-event baselines write (and flush) once per event by construction.

The hand-written batcher is what a user would write instead: a list, one ``dumps`` per
event on the caller, one write per ``MAX_BATCH`` events, with the stdlib ``json`` and with
orjson. The BatchMetricsWriter passes keep every event (``max_buffer`` holds them all);
"BatchMetricsWriter (defaults)" runs the firehose with the default options (``on_full``,
``max_buffer``, ``encoder="auto"``) and counts what they dropped.
"""

from __future__ import annotations

import gc
import json
import logging
import logging.handlers
import math
import os
import queue
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from botperf import BatchMetricsWriter, read_metrics

from ._harness import Measurement, Report, Target

CHUNK = 1_000
MAX_BATCH = 50
BASELINE = "logging.FileHandler (JSON)"
HAND_JSON = "hand-written batcher (json)"
HAND_ORJSON = "hand-written batcher (orjson)"
WRITER_JSON = "BatchMetricsWriter (json)"
WRITER_ORJSON = "BatchMetricsWriter (orjson)"
WRITER_DEFAULTS = "BatchMetricsWriter (defaults)"


@dataclass
class Pipeline:
    """One implementation, opened on a file: record an event, settle, close."""

    call: Callable[[int], object]
    close: Callable[[], int]  # returns the number of write calls
    settle: Callable[[], object] = lambda: None
    dropped: Callable[[], int] = lambda: 0


def fields(number: int) -> dict[str, Any]:
    return {"channel": 123, "latency_ms": 812.5, "tokens": 240, "number": number}


def line(number: int) -> str:
    return json.dumps({"ts": time.time(), "event": "llm_call", **fields(number)})


def open_write_close(path: Path, events: int) -> Pipeline:
    def call(number: int) -> None:
        with open(path, "a", encoding="utf-8") as file:
            file.write(line(number) + "\n")

    return Pipeline(call, lambda: events)


def write_flush(path: Path, events: int) -> Pipeline:
    file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the pipeline

    def call(number: int) -> None:
        file.write(line(number) + "\n")
        file.flush()

    def close() -> int:
        file.close()
        return events

    return Pipeline(call, close)


def json_logger(name: str, handler: logging.Handler) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"benchmarks.metrics.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def file_handler(path: Path, events: int) -> Pipeline:
    handler = logging.FileHandler(path, encoding="utf-8")
    logger = json_logger("file", handler)

    def close() -> int:
        handler.close()
        return events

    return Pipeline(lambda number: logger.info(line(number)), close)


def queue_handler(path: Path, events: int) -> Pipeline:
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(records, handler)
    logger = json_logger("queue", logging.handlers.QueueHandler(records))
    listener.start()

    def close() -> int:
        listener.stop()
        handler.close()
        return events

    return Pipeline(lambda number: logger.info(line(number)), close, records.join)


def hand_batcher(encoder: str) -> Callable[[Path, int], Pipeline]:
    """What a user writes by hand: a list, ``dumps`` per event, one write per MAX_BATCH."""

    def open_batcher(path: Path, events: int) -> Pipeline:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        batch: list[dict[str, Any]] = []
        writes = 0
        if encoder == "orjson":
            dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE

            def encode() -> bytes:
                return b"".join([dumps(event, option=newline) for event in batch])
        else:

            def encode() -> bytes:
                return "".join([json.dumps(event) + "\n" for event in batch]).encode()

        def write() -> None:
            nonlocal writes
            os.write(fd, encode())
            batch.clear()
            writes += 1

        def record(event: str, **fields: Any) -> None:
            batch.append({"ts": time.time(), "event": event, **fields})
            if len(batch) >= MAX_BATCH:
                write()

        def call(number: int) -> None:
            record("llm_call", channel=123, latency_ms=812.5, tokens=240, number=number)

        def close() -> int:
            if batch:
                write()
            os.close(fd)
            return writes

        return Pipeline(call, close)

    return open_batcher


def batch_writer(encoder: str, *, defaults: bool = False) -> Callable[[Path, int], Pipeline]:
    def open_writer(path: Path, events: int) -> Pipeline:
        if defaults:
            metrics = BatchMetricsWriter(path)
        else:
            # max_buffer holds every event so that the firehose drops none: end to end is
            # then the cost of all of them, not of the ones a bounded buffer kept.
            metrics = BatchMetricsWriter(
                path,
                max_batch=MAX_BATCH,
                max_buffer=events,
                encoder=encoder,  # type: ignore[arg-type]
            )
        metrics.__enter__()

        def call(number: int) -> None:
            metrics.record("llm_call", channel=123, latency_ms=812.5, tokens=240, number=number)

        def close() -> int:
            metrics.__exit__(None, None, None)
            stats = metrics.stats
            assert stats.written + stats.dropped == events, stats
            assert defaults or stats.dropped == 0, stats
            return stats.batches

        return Pipeline(call, close, metrics.flush_sync, lambda: metrics.stats.dropped)

    return open_writer


IMPLEMENTATIONS: dict[str, Callable[[Path, int], Pipeline]] = {
    "per-event open/write/close": open_write_close,
    "per-event write+flush": write_flush,
    BASELINE: file_handler,
    "QueueHandler+QueueListener": queue_handler,
    HAND_JSON: hand_batcher("json"),
    HAND_ORJSON: hand_batcher("orjson"),
    WRITER_JSON: batch_writer("json"),
    WRITER_ORJSON: batch_writer("orjson"),
    WRITER_DEFAULTS: batch_writer("auto", defaults=True),
}


def caller_cost(pipeline: Pipeline, events: int) -> float:
    """Median ns per call over chunks of CHUNK calls, settling untimed between chunks."""
    chunks = []
    for start in range(0, events, CHUNK):
        stop = min(start + CHUNK, events)
        call = pipeline.call
        began = time.perf_counter_ns()
        for number in range(start, stop):
            call(number)
        chunks.append((time.perf_counter_ns() - began) / (stop - start))
        pipeline.settle()
    pipeline.close()
    return statistics.median(chunks)


@dataclass
class Firehose:
    """One firehose pass: events/s, process CPU ns per event, write calls, drops."""

    rate: float
    cpu_ns: float
    write_calls: int
    dropped: int


def firehose(open_pipeline: Callable[[Path, int], Pipeline], path: Path, events: int) -> Firehose:
    """Every event as fast as possible, timed from the first call until the file is closed."""
    began, cpu_began = time.perf_counter(), time.process_time()
    pipeline = open_pipeline(path, events)
    call = pipeline.call
    for number in range(events):
        call(number)
    write_calls = pipeline.close()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    dropped = pipeline.dropped()
    # Events kept per second: a writer that drops events must not look faster for it.
    return Firehose((events - dropped) / elapsed, cpu / events * 1e9, write_calls, dropped)


def run(quick: bool) -> Report:
    events = 20_000 if quick else 200_000
    repeat = 2 if quick else 3
    report = Report(name=f"metrics: {events:,} events, max_batch={MAX_BATCH}")
    costs: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    rates: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    cpu: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    dropped: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    writes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as directory:
        for attempt in range(repeat):
            for number, (name, open_pipeline) in enumerate(IMPLEMENTATIONS.items()):
                path = Path(directory) / f"{attempt}-{number}.jsonl"
                gc.collect()  # each pass starts from the same heap, not the last one's garbage
                costs[name].append(caller_cost(open_pipeline(path, events), events))
                path.unlink()
                gc.collect()
                result = firehose(open_pipeline, path, events)
                rates[name].append(result.rate)
                cpu[name].append(result.cpu_ns)
                dropped[name].append(float(result.dropped))
                writes[name] = result.write_calls
                assert sum(1 for _ in read_metrics(path)) == events - result.dropped, name
                path.unlink()
    params = {"events": events, "max_batch": MAX_BATCH}
    for name in IMPLEMENTATIONS:
        baseline = name == BASELINE
        report.measurements += [
            Measurement(
                "caller cost per event", name, "ns", tuple(costs[name]), baseline, params=params
            ),
            Measurement(
                "firehose, end to end",
                name,
                "events/s",
                tuple(rates[name]),
                baseline,
                higher_is_better=True,
                params=params,
            ),
            Measurement(
                "process CPU per event, firehose (all threads)",
                name,
                "ns",
                tuple(cpu[name]),
                baseline,
                params=params,
            ),
            Measurement(
                "write calls", name, "calls", (float(writes[name]),), baseline, params=params
            ),
        ]
    report.measurements.append(
        Measurement(
            "events dropped in the firehose",
            WRITER_DEFAULTS,
            "events",
            tuple(dropped[WRITER_DEFAULTS]),
            params=params,
        )
    )
    record_json = report.find("caller cost per event", WRITER_JSON).median
    record_orjson = report.find("caller cost per event", WRITER_ORJSON).median

    def rate(name: str) -> float:
        return report.find("firehose, end to end", name).median

    file_cost = report.find("caller cost per event", BASELINE).median
    report.targets += [
        Target("record() median cost on the caller (json writer)", record_json, 500, "ns"),
        Target("record() median cost on the caller (orjson writer)", record_orjson, 500, "ns"),
        Target(
            "logging.FileHandler caller cost / record() cost (json writer)",
            file_cost / record_json,
            14,
            "x",
            higher_is_better=True,
        ),
        Target(
            "end to end with json",
            rate(WRITER_JSON),
            430_000,
            "events/s",
            higher_is_better=True,
        ),
        Target(
            "end to end with orjson",
            rate(WRITER_ORJSON),
            3_000_000,
            "events/s",
            higher_is_better=True,
        ),
        Target(
            "end to end, every event kept, vs the hand-written batcher (json)",
            rate(WRITER_JSON) / rate(HAND_JSON),
            1.0,
            "x",
            higher_is_better=True,
        ),
        Target(
            "end to end, every event kept, vs the hand-written batcher (orjson)",
            rate(WRITER_ORJSON) / rate(HAND_ORJSON),
            1.0,
            "x",
            higher_is_better=True,
        ),
        Target(
            "end to end with the default options vs the hand-written batcher (orjson)",
            rate(WRITER_DEFAULTS) / rate(HAND_ORJSON),
            0.8,
            "x",
            higher_is_better=True,
        ),
        Target(
            f"events dropped by the default options in a loop of {events:,}",
            report.find("events dropped in the firehose", WRITER_DEFAULTS).median,
            0,
            "events",
        ),
        Target(
            "write calls (json writer) vs ceil(events / max_batch)",
            float(writes[WRITER_JSON]),
            math.ceil(events / MAX_BATCH),
            "calls",
        ),
    ]
    report.notes.append(
        "caller cost: median chunk of 1,000 calls, settled between chunks (module docstring); "
        "per-event baselines make one write per event by construction"
    )
    report.notes.append(
        "process CPU per event: time.process_time() over the firehose pass (every thread), "
        "divided by the events recorded; the firehose rate counts the events kept"
    )
    return report
