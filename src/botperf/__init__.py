"""botperf: performance primitives for chat bots.

Single-flight deduplication of async calls, O(1) LRU chat history, batched metrics
writing and profiling helpers, for any async framework (asyncio or trio, via anyio).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._dedup import Deduplicator as Deduplicator
from ._dedup import DedupStats as DedupStats
from ._dedup import deduplicate as deduplicate
from ._exceptions import BotperfError as BotperfError
from ._exceptions import DedupCancelledError as DedupCancelledError
from ._exceptions import DedupKeyError as DedupKeyError
from ._exceptions import MetricsFileError as MetricsFileError
from ._exceptions import MetricsFileNotFoundError as MetricsFileNotFoundError
from ._reader import read_metrics as read_metrics

try:
    __version__: str = version("botperf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "BotperfError",
    "DedupCancelledError",
    "DedupKeyError",
    "DedupStats",
    "Deduplicator",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "__version__",
    "deduplicate",
    "read_metrics",
]
