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
from ._exceptions import MetricsFileError as MetricsFileError
from ._exceptions import MetricsFileNotFoundError as MetricsFileNotFoundError
from ._history import HistoryStats as HistoryStats
from ._history import HistoryStore as HistoryStore
from ._history import Message as Message
from ._history import approximate_tokens as approximate_tokens
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
    "Message",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "__version__",
    "approximate_tokens",
    "read_metrics",
]
