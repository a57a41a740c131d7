"""botperf's figures for Prometheus: a custom collector for prometheus_client.

Needs prometheus_client (``pip install 'botperf[prometheus]'``). `import botperf` does
not import this package.
"""

from __future__ import annotations

try:
    import prometheus_client  # noqa: F401  (checked here to name the extra to install)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "botperf.prometheus needs prometheus_client, which is not installed: "
        "pip install 'botperf[prometheus]' (or pip install prometheus-client)"
    ) from exc

from ._collector import BotperfCollector as BotperfCollector

__all__ = ["BotperfCollector"]
