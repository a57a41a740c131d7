"""botperf: performance primitives for chat bots.

Single-flight deduplication of async calls, O(1) LRU chat history, batched metrics
writing and profiling helpers, for any async framework (asyncio or trio, via anyio).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._exceptions import BotperfError as BotperfError
from ._exceptions import MetricsBufferFullError as MetricsBufferFullError
from ._exceptions import MetricsFieldError as MetricsFieldError
from ._exceptions import MetricsFileError as MetricsFileError
from ._exceptions import MetricsFileNotFoundError as MetricsFileNotFoundError
from ._exceptions import MetricsNotWrittenError as MetricsNotWrittenError
from ._exceptions import MetricsWriteError as MetricsWriteError
from ._exceptions import MetricsWriterStateError as MetricsWriterStateError
from ._metrics import BatchMetricsWriter as BatchMetricsWriter
from ._metrics import WriterStats as WriterStats
from ._reader import read_metrics as read_metrics
from ._sinks import JsonLinesFileSink as JsonLinesFileSink
from ._sinks import MetricsSink as MetricsSink

try:
    __version__: str = version("botperf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "BatchMetricsWriter",
    "BotperfError",
    "JsonLinesFileSink",
    "MetricsBufferFullError",
    "MetricsFieldError",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "MetricsNotWrittenError",
    "MetricsSink",
    "MetricsWriteError",
    "MetricsWriterStateError",
    "WriterStats",
    "__version__",
    "read_metrics",
]
