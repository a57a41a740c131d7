"""Checked by ``mypy --strict``: the typed public API is a contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from typing_extensions import assert_type

import botperf

assert_type(botperf.__version__, str)
assert_type(botperf.read_metrics("metrics.jsonl"), Iterator[dict[str, Any]])
