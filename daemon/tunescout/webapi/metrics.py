"""`/metrics` in Prometheus' text format, through prometheus-client (the `http` extra).

The library's counts and the daemon's state are read from the database at each scrape (what
`status` shows, never stale); analysis seconds and child peak memory come from the supervisor's
own `EVENT=analysed` log records, caught by a logging handler, so the workers part knows nothing
of HTTP and the numbers are exactly the ones in the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from tunescout.config import Config
from tunescout.store.reader import StoreReader

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SUPERVISOR_LOGGER = "tunescout.workers.supervisor"
ANALYSIS_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
PEAK_BUCKETS_BYTES = tuple(float(mib * 1024**2) for mib in (64, 128, 256, 384, 512, 768, 1024, 1536, 2048))


class _StoreCollector(Collector):
    """The counts and the daemon's state, read at each scrape from a connection of its own."""

    def __init__(self, db: Path, config: Config) -> None:
        self._db = db
        self._config = config

    def collect(self) -> Iterator[Any]:
        store = StoreReader.open(self._db)
        try:
            counts, state = store.counts(), store.daemon_state() or {}
        finally:
            store.close()
        for name, value, what in (
                ("files", counts.files, "files tunescout knows in the library folders"),
                ("analysed", counts.analysed, "files analysed"),
                ("failed", counts.failed, "files whose analysis failed, quarantined ones included"),
                ("quarantined", counts.quarantined, "files quarantined until they change"),
                ("queue_length", counts.queued, "files waiting for analysis")):
            yield GaugeMetricFamily(f"tunescout_{name}", what, value=value)
        reason = state.get("paused_reason") or ""
        yield GaugeMetricFamily("tunescout_paused", "1 while the memory gate holds intake back",
                                value=1 if reason else 0)
        yield InfoMetricFamily("tunescout_pause", "why intake is paused (empty when it is not)",
                               value={"reason": reason})
        for key, name, what in (("workers", "workers", "analysis children the memory budget allows"),
                                ("running_children", "running_children", "analysis children running"),
                                ("memory_available_bytes", "memory_available_bytes",
                                 "available memory at the gate's last reading")):
            if isinstance(state.get(key), int):
                yield GaugeMetricFamily(f"tunescout_{name}", what, value=state[key])  # type: ignore[literal-required]
        memory = self._config.memory
        yield GaugeMetricFamily("tunescout_memory_min_available_bytes",
                                "the gate pauses intake below this much available memory",
                                value=memory.min_available_bytes)
        yield GaugeMetricFamily("tunescout_memory_pause_above_percent",
                                "the gate pauses intake above this memory use",
                                value=memory.pause_above_percent)


class _AnalysedHandler(logging.Handler):
    """Observe DURATION_MS and PEAK_RSS_KB of each `EVENT=analysed` record."""

    def __init__(self, seconds: Histogram, peak: Histogram) -> None:
        super().__init__(logging.INFO)
        self._seconds = seconds
        self._peak = peak

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "EVENT", None) != "analysed":
            return
        duration_ms, peak_kb = getattr(record, "DURATION_MS", None), getattr(record, "PEAK_RSS_KB", None)
        if isinstance(duration_ms, int | float):
            self._seconds.observe(duration_ms / 1000.0)
        if isinstance(peak_kb, int | float) and peak_kb > 0:
            self._peak.observe(peak_kb * 1024.0)


class Metrics:
    """The registry `/metrics` renders, and the HTTP API's own request counters."""

    def __init__(self, db: Path, config: Config) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StoreCollector(db, config))
        seconds = Histogram("tunescout_analysis_seconds", "wall-clock seconds to analyse one track",
                            buckets=ANALYSIS_BUCKETS_S, registry=self.registry)
        peak = Histogram("tunescout_child_peak_rss_bytes", "an analysis child's peak memory per track",
                         buckets=PEAK_BUCKETS_BYTES, registry=self.registry)
        self.requests = Counter("tunescout_http_requests", "HTTP API requests answered",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("tunescout_http_request_seconds", "HTTP API time to answer",
                                 ["endpoint"], registry=self.registry)
        self._handler = _AnalysedHandler(seconds, peak)
        logging.getLogger(SUPERVISOR_LOGGER).addHandler(self._handler)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def close(self) -> None:
        logging.getLogger(SUPERVISOR_LOGGER).removeHandler(self._handler)
