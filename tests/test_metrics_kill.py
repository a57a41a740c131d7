"""A writer killed with SIGKILL mid-stream leaves only whole lines (but perhaps a torn last one)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import botperf
from botperf import read_metrics

SAFETY_TIMEOUT = 30.0

WRITER = """
import itertools, sys
from botperf import BatchMetricsWriter

with BatchMetricsWriter(sys.argv[1], max_batch=500, max_delay=0.001, encoder=sys.argv[2]) as m:
    for number in itertools.count():
        m.record("tick", number=number, payload="x" * 200)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
@pytest.mark.parametrize("encoder", ["json", "orjson"])
def test_a_killed_writer_leaves_whole_lines_and_a_readable_file(
    tmp_path: Path, encoder: str
) -> None:
    path = tmp_path / "m.jsonl"
    source = str(Path(botperf.__file__).resolve().parents[1])
    environment = {**os.environ, "PYTHONPATH": source}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), encoder], env=environment)
    try:
        deadline = time.monotonic() + SAFETY_TIMEOUT
        while not (path.exists() and path.stat().st_size > 2_000_000):
            assert writer.poll() is None, "the writer exited before it was killed"
            assert time.monotonic() < deadline, "the writer wrote too little to kill it mid-stream"
            time.sleep(0.01)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    *complete, last = path.read_bytes().split(b"\n")
    for line in complete:
        assert json.loads(line)["event"] == "tick"
    if last:
        with pytest.raises(ValueError, match=r"Unterminated|Expecting|Invalid"):
            json.loads(last)
    events = list(read_metrics(path))
    assert len(events) == len(complete)
    assert all(a["number"] < b["number"] for a, b in itertools.pairwise(events))
