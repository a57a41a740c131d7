"""A full disk under the metrics writer, on a real 64 KiB tmpfs (issue 13).

Mounting needs root and Linux: CI runs the tests as root; elsewhere these tests skip.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botperf import BatchMetricsWriter, MetricsNotWrittenError, MetricsWriteError, read_metrics

NEVER = 3600.0
#: A field that makes each event about 1 KiB, so 100 events do not fit on the disk.
PAYLOAD = "x" * 1000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for this test, unmounted after it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a 64 KiB tmpfs needs root (CI runs the tests as root)")
    mount = shutil.which("mount")
    umount = shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("mounting a 64 KiB tmpfs needs the mount and umount commands")
    disk = tmp_path / "disk"
    disk.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"could not mount a 64 KiB tmpfs: {result.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run([umount, str(disk)], check=True)


def fill(path: Path, limit: int | None = None) -> int:
    """Write zeros to ``path`` until the disk is full (or ``limit`` bytes); return the size."""
    size = 0
    with path.open("wb", buffering=0) as file:
        try:
            while limit is None or size < limit:
                chunk = 4096 if limit is None else min(4096, limit - size)
                size += file.write(b"\0" * chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return size


class RefusingSink:
    """A sink that is down for good: every event ends up in the unwritten file."""

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        raise ConnectionError("metrics service unreachable")

    def close(self) -> None:
        """Nothing to release."""


def record_then_close(metrics: BatchMetricsWriter, numbers: range) -> None:
    with metrics:
        for number in numbers:
            metrics.record("tick", number=number, payload=PAYLOAD)


def close_with_unwritten(saved: Path, count: int, first: int = 0) -> MetricsNotWrittenError:
    """Record ``count`` events into a writer whose sink refuses them; return its close error."""
    metrics = BatchMetricsWriter(RefusingSink(), max_delay=NEVER, unwritten_path=saved)
    with pytest.raises(MetricsNotWrittenError) as info:
        record_then_close(metrics, range(first, first + count))
    assert metrics.stats.unwritten == count
    return info.value


def numbers(path: Path) -> list[int]:
    return [event["number"] for event in read_metrics(path)]


def test_a_save_cut_short_keeps_its_whole_lines_and_counts_them(small_disk: Path) -> None:
    saved = small_disk / "m.unwritten.jsonl"
    error = close_with_unwritten(saved, 100)
    data = saved.read_bytes()
    assert data.endswith(b"\n")  # no fragment of the event that did not fit
    lines = data.splitlines()
    assert 0 < len(lines) < 100
    assert [json.loads(line)["number"] for line in lines] == list(range(len(lines)))
    assert error.count == 100
    assert error.saved == len(lines)
    assert error.saved_to == str(saved)
    assert f"{len(lines)} of them were saved to {saved}" in str(error)
    assert f"saving the other {100 - len(lines)} failed too" in str(error)
    assert "No space left on device" in str(error)


def test_a_save_onto_a_full_disk_leaves_no_empty_file(small_disk: Path) -> None:
    fill(small_disk / "filler")
    saved = small_disk / "m.unwritten.jsonl"
    error = close_with_unwritten(saved, 5)
    assert not saved.exists()
    assert (error.count, error.saved, error.saved_to) == (5, 0, None)
    assert str(error).endswith("so they are lost")


def test_a_later_save_appends_whole_lines_after_one_cut_short(small_disk: Path) -> None:
    filler = small_disk / "filler"
    fill(filler, limit=32 * 1024)
    saved = small_disk / "m.unwritten.jsonl"
    first = close_with_unwritten(saved, 100)
    assert 0 < first.saved < 100
    filler.unlink()  # room again
    second = close_with_unwritten(saved, 10, first=1000)
    assert (second.count, second.saved, second.saved_to) == (10, 10, str(saved))
    assert numbers(saved) == [*range(first.saved), *range(1000, 1010)]


def test_a_full_disk_under_the_metrics_file_loses_nothing_uncounted(small_disk: Path) -> None:
    path = small_disk / "m.jsonl"
    metrics = BatchMetricsWriter(path, max_batch=10, max_delay=NEVER)
    with pytest.raises(MetricsNotWrittenError) as info:
        record_then_close(metrics, range(100))
    error = info.value
    stats = metrics.stats
    written = numbers(path)
    saved = numbers(Path(f"{path}.unwritten.jsonl")) if error.saved else []
    assert len(written) == stats.written
    assert len(saved) == error.saved
    assert error.count == stats.unwritten == 100 - stats.written
    assert written + saved == list(range(len(written) + len(saved)))
    assert stats.recorded == stats.written + stats.dropped + stats.unwritten == 100


def test_encoded_lines_a_full_disk_cut_short_are_retried_whole(small_disk: Path) -> None:
    filler = small_disk / "filler"
    size = fill(filler)
    os.truncate(filler, size - 4096)  # room for part of the first write only
    path = small_disk / "m.jsonl"
    metrics = BatchMetricsWriter(
        path, max_batch=5, max_delay=NEVER, retry_delay=NEVER, max_retry_delay=NEVER
    )
    # Past 40 batches waiting, record() encodes the oldest events into lines itself:
    # 60 events, about 9 KiB, that the flush writes in one write, which the disk cuts short.
    for number in range(260):
        metrics.record("tick", number=number, payload=PAYLOAD[:100])
    with pytest.raises(MetricsWriteError) as info:
        metrics.flush_sync()
    assert "No space left on device" in str(info.value)
    assert info.value.waiting == 260
    assert not path.exists() or path.stat().st_size == 0  # cut back to where it began
    filler.unlink()
    metrics.flush_sync()
    metrics.sink.close()  # never entered, so never closed: the disk must unmount
    stats = metrics.stats
    assert (stats.failed_writes, stats.written, stats.waiting) == (1, 260, 0)
    assert numbers(path) == list(range(260))
    assert path.read_bytes().count(b"\n") == 260
