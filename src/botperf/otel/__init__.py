"""botperf's figures for OpenTelemetry: observable instruments on a `Meter`.

Needs the OpenTelemetry API (``pip install 'botperf[otel]'``); the application sets up
the SDK and its exporters. `import botperf` does not import this package.
"""

from __future__ import annotations

try:
    import opentelemetry.metrics  # noqa: F401  (checked here to name the extra to install)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "botperf.otel needs the OpenTelemetry API, which is not installed: "
        "pip install 'botperf[otel]' (or pip install opentelemetry-api)"
    ) from exc

from ._instrument import GenAIOperation as GenAIOperation
from ._instrument import GenAIRecorder as GenAIRecorder
from ._instrument import instrument as instrument

__all__ = ["GenAIOperation", "GenAIRecorder", "instrument"]
