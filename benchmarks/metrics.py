"""BatchMetricsWriter against the usual ways of writing one JSON line per metric event.

Every implementation writes the same events to a JSON-lines file in a temp directory,
in the same process, one after the other, several runs each. For each run we measure:

- the caller's cost per event: the loop of calls is timed in chunks of ``CHUNK``
  calls and the median chunk is taken, so a chunk that happened to include the
  background thread's turn at the GIL does not count as the caller's cost (that
  work is in the end-to-end figure instead);
- end to end events/s: from the first call until every event is in the file and the
  file is closed (background threads included);
- write calls: batches written by BatchMetricsWriter (``stats.batches``); the
  per-event baselines write (and flush) once per event by construction.
"""

from __future__ import annotations

import gc
import json
import logging
import logging.handlers
import math
import queue
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botperf import BatchMetricsWriter, read_metrics

from ._harness import Measurement, Report, Target

CHUNK = 1_000
MAX_BATCH = 50

#: An implementation: given the file and the event count, run the whole pipeline and
#: return (ns per call for each chunk, seconds end to end, write calls or None).
Implementation = Callable[[Path, int], tuple[list[float], float, int | None]]


def event(number: int) -> dict[str, Any]:
    return {"channel": 123, "latency_ms": 812.5, "tokens": 240, "number": number}


def timed_calls(call: Callable[[int], object], events: int) -> list[float]:
    """Call ``call(number)`` for each event; ns per call for each chunk of CHUNK calls."""
    chunks = []
    for start in range(0, events, CHUNK):
        stop = min(start + CHUNK, events)
        began = time.perf_counter_ns()
        for number in range(start, stop):
            call(number)
        chunks.append((time.perf_counter_ns() - began) / (stop - start))
    return chunks


def open_write_close(path: Path, events: int) -> tuple[list[float], float, int | None]:
    def call(number: int) -> None:
        line = json.dumps({"ts": time.time(), "event": "llm_call", **event(number)}) + "\n"
        with open(path, "a", encoding="utf-8") as file:
            file.write(line)

    began = time.perf_counter()
    chunks = timed_calls(call, events)
    return chunks, time.perf_counter() - began, events


def write_flush(path: Path, events: int) -> tuple[list[float], float, int | None]:
    began = time.perf_counter()
    with open(path, "a", encoding="utf-8") as file:

        def call(number: int) -> None:
            line = {"ts": time.time(), "event": "llm_call", **event(number)}
            file.write(json.dumps(line) + "\n")
            file.flush()

        chunks = timed_calls(call, events)
    return chunks, time.perf_counter() - began, events


def json_logger(name: str, handler: logging.Handler) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"benchmarks.metrics.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def file_handler(path: Path, events: int) -> tuple[list[float], float, int | None]:
    handler = logging.FileHandler(path, encoding="utf-8")
    logger = json_logger("file", handler)

    def call(number: int) -> None:
        logger.info(json.dumps({"ts": time.time(), "event": "llm_call", **event(number)}))

    began = time.perf_counter()
    chunks = timed_calls(call, events)
    handler.close()
    return chunks, time.perf_counter() - began, events


def queue_handler(path: Path, events: int) -> tuple[list[float], float, int | None]:
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(records, handler)
    logger = json_logger("queue", logging.handlers.QueueHandler(records))

    def call(number: int) -> None:
        logger.info(json.dumps({"ts": time.time(), "event": "llm_call", **event(number)}))

    began = time.perf_counter()
    listener.start()
    chunks = timed_calls(call, events)
    listener.stop()
    handler.close()
    return chunks, time.perf_counter() - began, events


def batch_writer(encoder: str) -> Implementation:
    def run(path: Path, events: int) -> tuple[list[float], float, int | None]:
        # max_buffer holds every event so that none is dropped: end to end is then the
        # cost of all of them, not of the ones a bounded buffer kept.
        metrics = BatchMetricsWriter(
            path,
            max_batch=MAX_BATCH,
            max_buffer=events,
            encoder=encoder,  # type: ignore[arg-type]
        )
        began = time.perf_counter()
        with metrics:

            def call(number: int) -> None:
                metrics.record("llm_call", channel=123, latency_ms=812.5, tokens=240, number=number)

            chunks = timed_calls(call, events)
        elapsed = time.perf_counter() - began
        assert metrics.stats.written == events, metrics.stats
        return chunks, elapsed, metrics.stats.batches

    return run


IMPLEMENTATIONS: dict[str, Implementation] = {
    "per-event open/write/close": open_write_close,
    "per-event write+flush": write_flush,
    "logging.FileHandler (JSON)": file_handler,
    "QueueHandler+QueueListener": queue_handler,
    "BatchMetricsWriter (json)": batch_writer("json"),
    "BatchMetricsWriter (orjson)": batch_writer("orjson"),
}


def run(quick: bool) -> Report:
    events = 20_000 if quick else 200_000
    repeat = 2 if quick else 3
    report = Report(name=f"metrics: {events:,} events, max_batch={MAX_BATCH}")
    caller: dict[str, list[float]] = {}
    throughput: dict[str, list[float]] = {}
    writes: dict[str, int | None] = {}
    with tempfile.TemporaryDirectory() as directory:
        for attempt in range(repeat):
            for name, implementation in IMPLEMENTATIONS.items():
                path = Path(directory) / f"{attempt}-{len(caller.get(name, []))}-{name[:12]}.jsonl"
                gc.collect()  # each run starts from the same heap, not the last run's garbage
                chunks, elapsed, write_calls = implementation(path, events)
                assert sum(1 for _ in read_metrics(path)) == events, name
                path.unlink()
                caller.setdefault(name, []).append(statistics.median(chunks))
                throughput.setdefault(name, []).append(events / elapsed)
                writes[name] = write_calls
    params = {"events": events, "max_batch": MAX_BATCH}
    for name in IMPLEMENTATIONS:
        baseline = name == "logging.FileHandler (JSON)"
        report.measurements.append(
            Measurement(
                "caller cost per event", name, "ns", tuple(caller[name]), baseline, params=params
            )
        )
        report.measurements.append(
            Measurement(
                "end to end",
                name,
                "events/s",
                tuple(throughput[name]),
                baseline,
                higher_is_better=True,
                params=params,
            )
        )
        if writes[name] is not None:
            report.measurements.append(
                Measurement(
                    "write calls",
                    name,
                    "calls",
                    (float(writes[name] or 0),),
                    baseline,
                    params=params,
                )
            )
    record_json = report.find("caller cost per event", "BatchMetricsWriter (json)").median
    record_orjson = report.find("caller cost per event", "BatchMetricsWriter (orjson)").median
    file_cost = report.find("caller cost per event", "logging.FileHandler (JSON)").median
    report.targets += [
        Target("record() median cost on the caller (json writer)", record_json, 500, "ns"),
        Target("record() median cost on the caller (orjson writer)", record_orjson, 500, "ns"),
        Target(
            "logging.FileHandler caller cost / record() cost",
            file_cost / record_json,
            14,
            "x",
            higher_is_better=True,
        ),
        Target(
            "end to end with json",
            report.find("end to end", "BatchMetricsWriter (json)").median,
            430_000,
            "events/s",
            higher_is_better=True,
        ),
        Target(
            "end to end with orjson",
            report.find("end to end", "BatchMetricsWriter (orjson)").median,
            3_000_000,
            "events/s",
            higher_is_better=True,
        ),
        Target(
            "write calls (json writer) vs ceil(events / max_batch)",
            report.find("write calls", "BatchMetricsWriter (json)").median,
            math.ceil(events / MAX_BATCH),
            "calls",
        ),
    ]
    report.notes.append(
        "caller cost: median over chunks of 1,000 calls (see the module docstring); "
        "per-event baselines make one write per event by construction"
    )
    return report
