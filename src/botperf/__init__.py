"""botperf: performance primitives for chat bots.

Single-flight deduplication of async calls, O(1) LRU chat history, batched metrics
writing and profiling helpers, for any async framework (asyncio or trio, via anyio).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._exceptions import BotperfError as BotperfError
from ._exceptions import HistoryFileError as HistoryFileError
from ._exceptions import HistoryFileNotFoundError as HistoryFileNotFoundError
from ._exceptions import HistoryTypeError as HistoryTypeError
from ._exceptions import HistoryValueError as HistoryValueError
from ._exceptions import IncompatibleRecordersError as IncompatibleRecordersError
from ._exceptions import InvalidDurationError as InvalidDurationError
from ._exceptions import MetricsFileError as MetricsFileError
from ._exceptions import MetricsFileNotFoundError as MetricsFileNotFoundError
from ._exceptions import RedisAsyncioRequiredError as RedisAsyncioRequiredError
from ._exceptions import RedisCommandError as RedisCommandError
from ._exceptions import RedisUnavailableError as RedisUnavailableError
from ._exceptions import TimerInUseError as TimerInUseError
from ._history import HistoryStats as HistoryStats
from ._history import HistoryStore as HistoryStore
from ._history import Message as Message
from ._history import approximate_tokens as approximate_tokens
from ._latency import LatencyRecorder as LatencyRecorder
from ._latency import LatencyStats as LatencyStats
from ._profiling import profile as profile
from ._profiling import timed as timed
from ._reader import read_metrics as read_metrics

try:
    __version__: str = version("botperf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "BotperfError",
    "HistoryFileError",
    "HistoryFileNotFoundError",
    "HistoryStats",
    "HistoryStore",
    "HistoryTypeError",
    "HistoryValueError",
    "IncompatibleRecordersError",
    "InvalidDurationError",
    "LatencyRecorder",
    "LatencyStats",
    "Message",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "RedisAsyncioRequiredError",
    "RedisCommandError",
    "RedisUnavailableError",
    "TimerInUseError",
    "__version__",
    "approximate_tokens",
    "profile",
    "read_metrics",
    "timed",
]
