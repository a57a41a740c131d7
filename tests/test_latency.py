from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botperf import BotperfError, InvalidOptionError, LatencyRecorder, LatencyStats

# Durations from 1 ns to about 11 days, plus exact zeros.
durations = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-9, max_value=1e6, allow_nan=False, allow_infinity=False),
)
sample_lists = st.lists(durations, min_size=1, max_size=300)


def exact_percentile(samples: list[float], fraction: float) -> float:
    """Nearest rank: the sample of rank ceil(fraction * n) in sorted order."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def relative_error(reported: float, exact: float) -> float:
    if exact == 0.0:
        return 0.0 if reported == 0.0 else math.inf
    return abs(reported - exact) / exact


def recorded(samples: list[float], *, name: str = "op", **options: float) -> LatencyRecorder:
    recorder = LatencyRecorder(**options)
    for seconds in samples:
        recorder.observe(name, seconds)
    return recorder


@settings(max_examples=200, deadline=None)
@given(samples=sample_lists)
def test_percentiles_are_within_one_percent_of_the_exact_nearest_rank(
    samples: list[float],
) -> None:
    stats = recorded(samples).summary()["op"]
    for fraction, reported in ((0.5, stats.p50), (0.9, stats.p90), (0.99, stats.p99)):
        assert relative_error(reported, exact_percentile(samples, fraction)) <= 0.01


@settings(max_examples=100, deadline=None)
@given(
    samples=sample_lists,
    accuracy=st.sampled_from([0.001, 0.005, 0.02, 0.05, 0.2]),
)
def test_percentiles_honour_any_chosen_relative_accuracy(
    samples: list[float], accuracy: float
) -> None:
    stats = recorded(samples, relative_accuracy=accuracy).summary()["op"]
    for fraction, reported in ((0.5, stats.p50), (0.9, stats.p90), (0.99, stats.p99)):
        assert relative_error(reported, exact_percentile(samples, fraction)) <= accuracy


@settings(max_examples=100, deadline=None)
@given(samples=sample_lists)
def test_count_mean_and_max_are_exact(samples: list[float]) -> None:
    stats = recorded(samples).summary()["op"]
    assert stats.count == len(samples)
    assert stats.max == max(samples)
    assert stats.mean == pytest.approx(math.fsum(samples) / len(samples), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(samples=sample_lists)
def test_total_is_the_sum_of_the_durations_in_recording_order(samples: list[float]) -> None:
    stats = recorded(samples).summary()["op"]
    running = 0.0
    for seconds in samples:
        running += seconds
    assert stats.total == running
    assert stats.mean == stats.total / stats.count


@settings(max_examples=50, deadline=None)
@given(
    low_exponent=st.integers(min_value=-9, max_value=3),
    decades=st.integers(min_value=1, max_value=8),
    repeats=st.integers(min_value=1, max_value=4),
)
def test_bucket_count_is_bounded_by_the_value_range_not_the_observations(
    low_exponent: int, decades: int, repeats: int
) -> None:
    low, high = 10.0**low_exponent, 10.0 ** (low_exponent + decades)
    recorder = LatencyRecorder()
    gamma = (1 + 0.01) / (1 - 0.01)
    bound = math.ceil(math.log(high / low) / math.log(gamma)) + 2
    steps = 5_000
    for _ in range(repeats):
        for step in range(steps + 1):
            recorder.observe("op", low * (high / low) ** (step / steps))
        assert recorder.bucket_count <= bound
    assert recorder.summary()["op"].count == repeats * (steps + 1)


def test_bucket_count_stays_put_when_the_same_durations_repeat() -> None:
    recorder = recorded([0.001 * (1.1**k) for k in range(100)])
    buckets = recorder.bucket_count
    for _ in range(50):
        for k in range(100):
            recorder.observe("op", 0.001 * (1.1**k))
    assert recorder.bucket_count == buckets


@settings(max_examples=100, deadline=None)
@given(first=st.lists(durations, max_size=100), second=st.lists(durations, max_size=100))
def test_merging_equals_observing_every_sample_in_one_recorder(
    first: list[float], second: list[float]
) -> None:
    merged = recorded(first)
    merged.merge(recorded(second))
    alone = recorded(first + second)
    merged_summary, alone_summary = merged.summary(), alone.summary()
    assert merged_summary.keys() == alone_summary.keys()
    for name, stats in alone_summary.items():
        other = merged_summary[name]
        assert (other.count, other.errors, other.p50, other.p90, other.p99, other.max) == (
            stats.count,
            stats.errors,
            stats.p50,
            stats.p90,
            stats.p99,
            stats.max,
        )
        assert other.mean == pytest.approx(stats.mean, rel=1e-9)
        assert other.total == pytest.approx(stats.total, rel=1e-9)
    assert merged.bucket_count == alone.bucket_count


def test_or_returns_a_new_merged_recorder_and_leaves_both_unchanged() -> None:
    left, right = recorded([0.1, 0.2], name="a"), recorded([0.3], name="b")
    left.observe("b", 0.4, error=True)
    combined = left | right
    assert combined is not left
    assert combined is not right
    assert combined.summary()["b"].count == 2
    assert combined.summary()["b"].errors == 1
    assert combined.summary()["a"].count == 2
    assert left.summary()["b"].count == 1
    assert "a" not in right.summary()


def test_or_with_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        LatencyRecorder() | 1  # type: ignore[operator]


def test_merging_recorders_of_different_accuracy_is_refused() -> None:
    fine, coarse = LatencyRecorder(relative_accuracy=0.01), recorded([1.0], relative_accuracy=0.05)
    with pytest.raises(ValueError, match="relative_accuracy") as error:
        fine.merge(coarse)
    assert isinstance(error.value, ValueError)
    assert (error.value.accuracy, error.value.other_accuracy) == (0.01, 0.05)
    assert fine.summary() == {}


def test_errors_are_counted_per_name_and_still_count_as_durations() -> None:
    recorder = LatencyRecorder()
    recorder.observe("ok", 0.1)
    recorder.observe("flaky", 0.2, error=True)
    recorder.observe("flaky", 0.3)
    summary = recorder.summary()
    assert (summary["ok"].count, summary["ok"].errors) == (1, 0)
    assert (summary["flaky"].count, summary["flaky"].errors) == (2, 1)


@pytest.mark.parametrize("bad", [-1e-9, -1.0, math.nan, math.inf, -math.inf])
def test_negative_nan_and_infinite_durations_are_rejected(bad: float) -> None:
    recorder = LatencyRecorder()
    with pytest.raises(ValueError, match="finite number >= 0") as error:
        recorder.observe("op", bad)
    assert isinstance(error.value, ValueError)
    assert isinstance(error.value, BotperfError)
    assert error.value.name == "op"
    assert recorder.summary() == {}


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 2.0, math.nan, "0.01", None, True])
def test_relative_accuracy_outside_zero_to_one_is_rejected(bad: float) -> None:
    with pytest.raises(InvalidOptionError, match="strictly between 0 and 1") as error:
        LatencyRecorder(relative_accuracy=bad)
    assert str(error.value).startswith(f"LatencyRecorder(relative_accuracy={bad!r}): ")
    assert (error.value.owner, error.value.option) == ("LatencyRecorder", "relative_accuracy")


def test_relative_accuracy_is_readable() -> None:
    assert LatencyRecorder(relative_accuracy=0.02).relative_accuracy == 0.02


def test_durations_under_a_nanosecond_share_the_zero_bucket() -> None:
    recorder = recorded([0.0, 1e-12, 5e-10])
    stats = recorder.summary()["op"]
    assert (stats.p50, stats.p99, stats.max) == (0.0, 0.0, 5e-10)
    assert recorder.bucket_count == 1


def test_summary_is_sorted_by_name_and_holds_stats_snapshots() -> None:
    recorder = LatencyRecorder()
    for name in ("zeta", "alpha", "mid"):
        recorder.observe(name, 0.5)
    summary = recorder.summary()
    assert list(summary) == ["alpha", "mid", "zeta"]
    assert summary["mid"] == LatencyStats(
        count=1, errors=0, mean=0.5, p50=0.5, p90=0.5, p99=0.5, max=0.5, total=0.5
    )
    recorder.observe("mid", 1.0)
    assert summary["mid"].count == 1


def test_stats_are_frozen() -> None:
    stats = recorded([0.5]).summary()["op"]
    with pytest.raises(AttributeError):
        stats.count = 2  # type: ignore[misc]


def test_stats_have_slots_and_no_instance_dict() -> None:
    stats = recorded([0.5]).summary()["op"]
    assert "count" in LatencyStats.__slots__
    assert not hasattr(stats, "__dict__")


def test_clear_forgets_everything() -> None:
    recorder = recorded([0.1, 0.2])
    recorder.clear()
    assert recorder.summary() == {}
    assert recorder.bucket_count == 0


def test_default_is_one_process_wide_recorder() -> None:
    assert LatencyRecorder.default() is LatencyRecorder.default()


def test_concurrent_threads_lose_no_observation() -> None:
    recorder = LatencyRecorder()
    per_thread, threads = 5_000, 4

    def work() -> None:
        for index in range(per_thread):
            recorder.observe("op", (index % 97 + 1) * 1e-4)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert recorder.summary()["op"].count == per_thread * threads


def test_repr_shows_accuracy_and_name_count() -> None:
    assert repr(recorded([0.1])) == "LatencyRecorder(relative_accuracy=0.01, names=1)"
