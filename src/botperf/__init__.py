"""botperf: performance primitives for chat bots.

Single-flight deduplication of async calls and shared streams, O(1) LRU chat history,
batched metrics writing and profiling helpers, for any async framework (asyncio or trio,
via anyio).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._dedup import Deduplicator as Deduplicator
from ._dedup import DedupStats as DedupStats
from ._dedup import deduplicate as deduplicate
from ._exceptions import BotperfError as BotperfError
from ._exceptions import DedupCancelledError as DedupCancelledError
from ._exceptions import DedupKeyError as DedupKeyError
from ._exceptions import HistoryFileError as HistoryFileError
from ._exceptions import HistoryFileNotFoundError as HistoryFileNotFoundError
from ._exceptions import HistoryTypeError as HistoryTypeError
from ._exceptions import HistoryValueError as HistoryValueError
from ._exceptions import IncompatibleRecordersError as IncompatibleRecordersError
from ._exceptions import InvalidDurationError as InvalidDurationError
from ._exceptions import InvalidOptionError as InvalidOptionError
from ._exceptions import MetricsBufferFullError as MetricsBufferFullError
from ._exceptions import MetricsFieldError as MetricsFieldError
from ._exceptions import MetricsFileError as MetricsFileError
from ._exceptions import MetricsFileNotFoundError as MetricsFileNotFoundError
from ._exceptions import MetricsNotWrittenError as MetricsNotWrittenError
from ._exceptions import MetricsWriteError as MetricsWriteError
from ._exceptions import MetricsWriterStateError as MetricsWriterStateError
from ._exceptions import RedisAsyncioRequiredError as RedisAsyncioRequiredError
from ._exceptions import RedisCommandError as RedisCommandError
from ._exceptions import RedisKeyError as RedisKeyError
from ._exceptions import RedisRemoteError as RedisRemoteError
from ._exceptions import RedisUnavailableError as RedisUnavailableError
from ._exceptions import StreamTooLongError as StreamTooLongError
from ._exceptions import TimerInUseError as TimerInUseError
from ._history import HistoryStats as HistoryStats
from ._history import HistoryStore as HistoryStore
from ._history import Message as Message
from ._history import approximate_tokens as approximate_tokens
from ._latency import LatencyRecorder as LatencyRecorder
from ._latency import LatencyStats as LatencyStats
from ._metrics import BatchMetricsWriter as BatchMetricsWriter
from ._metrics import OnFull as OnFull
from ._metrics import WriterStats as WriterStats
from ._profiling import EventRecorder as EventRecorder
from ._profiling import profile as profile
from ._profiling import timed as timed
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
    "DedupKeyError",
    "DedupStats",
    "Deduplicator",
    "EditPacer",
    "EventRecorder",
    "HistoryFileError",
    "HistoryFileNotFoundError",
    "HistoryStats",
    "HistoryStore",
    "HistoryTypeError",
    "HistoryValueError",
    "IncompatibleRecordersError",
    "InvalidDurationError",
    "InvalidOptionError",
    "JsonLinesFileSink",
    "LatencyRecorder",
    "LatencyStats",
    "Message",
    "MetricsBufferFullError",
    "MetricsFieldError",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "MetricsNotWrittenError",
    "MetricsSink",
    "MetricsWriteError",
    "MetricsWriterStateError",
    "OnFull",
    "RedisAsyncioRequiredError",
    "RedisCommandError",
    "RedisKeyError",
    "RedisRemoteError",
    "RedisUnavailableError",
    "ReplyStreamer",
    "SharedStream",
    "StreamTooLongError",
    "TimerInUseError",
    "WriterStats",
    "__version__",
    "approximate_tokens",
    "deduplicate",
    "profile",
    "read_metrics",
    "split_message",
    "timed",
]
