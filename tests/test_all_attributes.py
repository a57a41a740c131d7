"""The public API is exactly what is documented, and every name is importable."""

from __future__ import annotations

import botperf

DOCUMENTED_PUBLIC_API = {
    "BatchMetricsWriter",
    "BotperfError",
    "IncompatibleRecordersError",
    "InvalidOptionError",
    "InvalidDurationError",
    "LatencyRecorder",
    "LatencyStats",
    "HistoryFileError",
    "HistoryFileNotFoundError",
    "HistoryStats",
    "HistoryStore",
    "HistoryTypeError",
    "HistoryValueError",
    "Message",
    "DedupCancelledError",
    "DedupKeyError",
    "DedupStats",
    "Deduplicator",
    "EditPacer",
    "EventRecorder",
    "ReplyStreamer",
    "split_message",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "RedisAsyncioRequiredError",
    "RedisCommandError",
    "RedisKeyError",
    "RedisRemoteError",
    "RedisUnavailableError",
    "TimerInUseError",
    "JsonLinesFileSink",
    "OnFull",
    "MetricsBufferFullError",
    "MetricsFieldError",
    "MetricsNotWrittenError",
    "MetricsSink",
    "MetricsWriteError",
    "MetricsWriterStateError",
    "SharedStream",
    "StreamTooLongError",
    "WriterStats",
    "__version__",
    "profile",
    "approximate_tokens",
    "deduplicate",
    "read_metrics",
    "timed",
}


def test_all_is_exactly_the_documented_api() -> None:
    assert set(botperf.__all__) == DOCUMENTED_PUBLIC_API


def test_all_is_sorted_and_unique() -> None:
    assert list(botperf.__all__) == sorted(set(botperf.__all__))


def test_every_name_in_all_is_importable() -> None:
    for name in botperf.__all__:
        assert hasattr(botperf, name), name


def test_public_classes_claim_the_public_module() -> None:
    for name in botperf.__all__:
        obj = getattr(botperf, name)
        if isinstance(obj, type):
            assert obj.__module__.startswith("botperf."), name


def test_every_exception_derives_from_botperf_error() -> None:
    for name in botperf.__all__:
        obj = getattr(botperf, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, botperf.BotperfError), name
