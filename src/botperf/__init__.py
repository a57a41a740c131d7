"""botperf: performance primitives for chat bots.

Single-flight deduplication of async calls and shared streams, O(1) LRU chat history with
prompt-cache-friendly trimming, batched metrics writing, profiling helpers, admission
control and paced streamed replies, for any async framework (asyncio or trio, via anyio).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._dedup import Deduplicator as Deduplicator
from ._dedup import DedupStats as DedupStats
from ._dedup import deduplicate as deduplicate
from ._exceptions import BotperfError as BotperfError
from ._exceptions import DedupCancelledError as DedupCancelledError
from ._exceptions import FileFormatError as FileFormatError
from ._exceptions import InvalidOptionError as InvalidOptionError
from ._exceptions import MetricsNotWrittenError as MetricsNotWrittenError
from ._exceptions import MetricsWriteError as MetricsWriteError
from ._exceptions import RateLimitedError as RateLimitedError
from ._exceptions import StreamTooLongError as StreamTooLongError
from ._fair import FairLimiter as FairLimiter
from ._fair import FairLimiterStats as FairLimiterStats
from ._history import HistoryStore as HistoryStore
from ._history_base import HistoryStats as HistoryStats
from ._history_base import Message as Message
from ._history_base import approximate_tokens as approximate_tokens
from ._latency import LatencyRecorder as LatencyRecorder
from ._latency import LatencyStats as LatencyStats
from ._metrics import BatchMetricsWriter as BatchMetricsWriter
from ._metrics import WriterStats as WriterStats
from ._profiling import EventRecorder as EventRecorder
from ._profiling import profile as profile
from ._profiling import timed as timed
from ._ratelimit import RateLimiter as RateLimiter
from ._ratelimit import RateLimiterStats as RateLimiterStats
from ._reader import read_metrics as read_metrics
from ._replies import EditPacer as EditPacer
from ._replies import ReplyStreamer as ReplyStreamer
from ._sinks import JsonLinesFileSink as JsonLinesFileSink
from ._sinks import MetricsSink as MetricsSink
from ._split import split_message as split_message
from ._streams import SharedStream as SharedStream

try:
    __version__: str = version("botperf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "BatchMetricsWriter",
    "BotperfError",
    "DedupCancelledError",
    "DedupStats",
    "Deduplicator",
    "EditPacer",
    "EventRecorder",
    "FairLimiter",
    "FairLimiterStats",
    "FileFormatError",
    "HistoryStats",
    "HistoryStore",
    "InvalidOptionError",
    "JsonLinesFileSink",
    "LatencyRecorder",
    "LatencyStats",
    "Message",
    "MetricsNotWrittenError",
    "MetricsSink",
    "MetricsWriteError",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterStats",
    "ReplyStreamer",
    "SharedStream",
    "StreamTooLongError",
    "WriterStats",
    "__version__",
    "approximate_tokens",
    "deduplicate",
    "profile",
    "read_metrics",
    "split_message",
    "timed",
]
