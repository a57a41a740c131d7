"""The public API is exactly what is documented, and every name is importable."""

from __future__ import annotations

import botperf

DOCUMENTED_PUBLIC_API = {
    # The primitives
    "BatchMetricsWriter",
    "Deduplicator",
    "HistoryStore",
    "LatencyRecorder",
    "SharedStream",
    "deduplicate",
    "profile",
    "read_metrics",
    "timed",
    # Their statistics and values
    "DedupStats",
    "HistoryStats",
    "LatencyStats",
    "Message",
    "WriterStats",
    "approximate_tokens",
    # The protocols users implement, and the sink they may wrap
    "EventRecorder",
    "JsonLinesFileSink",
    "MetricsSink",
    # The errors callers catch and act on
    "BotperfError",
    "DedupCancelledError",
    "FileFormatError",
    "InvalidOptionError",
    "MetricsNotWrittenError",
    "MetricsWriteError",
    "StreamTooLongError",
    "__version__",
}

# Added by the issues after the lean API: admission control and streamed replies.
LATER_PRIMITIVES = {
    "FairLimiter",
    "FairLimiterStats",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterStats",
    "EditPacer",
    "ReplyStreamer",
    "split_message",
}

# The issue that fixed the exception contract allows at most this many names before the
# primitives that later issues add (RateLimiter, ReplyStreamer...).
CORE_API_SIZE = 26


def test_all_is_exactly_the_documented_api() -> None:
    assert set(botperf.__all__) == DOCUMENTED_PUBLIC_API | LATER_PRIMITIVES


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


def test_the_core_api_stays_small() -> None:
    assert len(DOCUMENTED_PUBLIC_API) <= CORE_API_SIZE


def test_no_public_name_mentions_redis_or_an_exporter() -> None:
    assert not [name for name in botperf.__all__ if "Redis" in name]
