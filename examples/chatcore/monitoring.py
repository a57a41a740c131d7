"""``/metrics`` for Prometheus: every botperf primitive of a `BotCore`, read at each scrape.

`core_collector` adds the core's objects to a `botperf.prometheus.BotperfCollector` under
the names the Grafana dashboard (``examples/grafana/botperf.json``) queries, and
`MetricsServer` serves them over HTTP with prometheus_client's own server, in a thread of
its own: a scrape reads the objects' counters there and never waits for the event loop.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from typing_extensions import Self

from botperf.prometheus import BotperfCollector

from .core import BotCore

__all__ = ["DEFAULT_METRICS_HOST", "NAMESPACE", "OBJECT_NAMES", "MetricsServer", "core_collector"]

NAMESPACE = "mybot"
"""The prefix of every metric name: ``mybot_dedup_executions_total``..."""

DEFAULT_METRICS_HOST = "127.0.0.1"
"""Where `MetricsServer` listens unless told otherwise: this machine only."""

OBJECT_NAMES = {
    "dedup": "llm",
    "history": "chat",
    "metrics": "events",
    "latency": "latency",
    "rate_limiter": "users",
    "slots": "ollama",
}
"""The ``name`` label of each of the core's attributes, as the dashboard queries them."""


def core_collector(core: BotCore, *, namespace: str = NAMESPACE) -> BotperfCollector:
    """A collector of every botperf object ``core`` uses, named as in `OBJECT_NAMES`.

    The rate limiter is left out when the core has none.
    """
    collector = BotperfCollector(namespace=namespace)
    for attribute, name in OBJECT_NAMES.items():
        obj = getattr(core, attribute)
        if obj is not None:
            collector.add(name, obj)
    return collector


@final
class MetricsServer:
    """prometheus_client's HTTP server on ``host:port``, serving ``/metrics`` for ``core``.

    Start it with `start` or ``with``; `close` stops it. Port 0 lets the system choose a
    free port: read it from `port` or `url` once started.

    Args:
        core: The core whose objects are exported (`core_collector`).
        port: The TCP port.
        host: The address to listen on; the default serves this machine only.
    """

    def __init__(self, core: BotCore, port: int, *, host: str = DEFAULT_METRICS_HOST) -> None:
        self.registry = CollectorRegistry()
        """The registry served: the core's collector only (no process or GC metrics)."""
        self.registry.register(core_collector(core))
        self._port = port
        self._host = host
        self._running: tuple[WSGIServer, threading.Thread] | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system for port 0)."""
        if self._running is None:
            raise RuntimeError("the metrics server is not running; start() it first")
        return self._port

    @property
    def url(self) -> str:
        """The address Prometheus scrapes: ``http://host:port/metrics``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> Self:
        """Listen and serve in a daemon thread.

        Raises:
            OSError: If the address cannot be bound (the port is taken, say).
            RuntimeError: If the server runs already.
        """
        if self._running is not None:
            raise RuntimeError("the metrics server runs already")
        self._running = start_http_server(self._port, self._host, registry=self.registry)
        self._port = self._running[0].server_address[1]
        return self

    def close(self) -> None:
        """Stop serving and wait for the server's thread. Idempotent."""
        if self._running is None:
            return
        server, thread = self._running
        self._running = None
        server.shutdown()
        server.server_close()
        thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
