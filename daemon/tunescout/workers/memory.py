"""Memory readings (machine and cgroup), the intake gate with hysteresis, the worker budget."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from tunescout.units import format_size

_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class MemoryReading:
    """How much memory tunescout may still use, from the machine and its own cgroup."""

    total_bytes: int  # the machine's memory, or the cgroup limit when lower
    available_bytes: int
    source: str  # "machine" or "cgroup"

    @property
    def used_percent(self) -> float:
        return 100.0 * (1 - self.available_bytes / self.total_bytes) if self.total_bytes else 0.0


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def cgroup_memory(proc_cgroup: Path = Path("/proc/self/cgroup"),
                  root: Path = Path("/sys/fs/cgroup")) -> tuple[int, int] | None:
    """Return (limit, usage) of this process's memory cgroup when it has a limit, else None."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2
            limit = _read_int(root / rel / "memory.max")
            usage = _read_int(root / rel / "memory.current")
        elif "memory" in controllers.split(","):  # cgroup v1
            base = root / "memory" / rel
            if not base.exists():
                base = root / "memory"
            limit = _read_int(base / "memory.limit_in_bytes")
            usage = _read_int(base / "memory.usage_in_bytes")
        else:
            continue
        if limit is not None and usage is not None and limit < _UNLIMITED // 2:
            return limit, usage
    return None


def read_memory() -> MemoryReading:
    """Read available memory: MemAvailable, tightened by the service's cgroup limit if any."""
    vm = psutil.virtual_memory()
    reading = MemoryReading(vm.total, vm.available, "machine")
    cgroup = cgroup_memory()
    if cgroup is not None:
        limit, usage = cgroup
        available = max(0, limit - usage)
        if limit < reading.total_bytes or available < reading.available_bytes:
            reading = MemoryReading(min(limit, vm.total), min(available, vm.available), "cgroup")
    return reading


class MemoryGate:
    """Pause intake when memory runs short; resume only once it has clearly recovered."""

    def __init__(self, min_available_bytes: int, pause_above_percent: float,
                 resume_below_percent: float) -> None:
        self.min_available_bytes = min_available_bytes
        self.pause_above_percent = pause_above_percent
        self.resume_below_percent = resume_below_percent
        self.paused_reason: str | None = None
        # resume only this far above min_available: 10 % of it, between 32 and 256 MiB
        self.resume_margin_bytes = int(min(max(0.1 * min_available_bytes, 32 * 2**20), 256 * 2**20))

    def update(self, reading: MemoryReading) -> bool:
        """Take a reading; return True when the gate changed between open and paused."""
        low = reading.available_bytes < self.min_available_bytes
        high = reading.used_percent > self.pause_above_percent
        if self.paused_reason is None:
            if low or high:
                self.paused_reason = self._reason(reading, low)
                return True
            return False
        # hysteresis: resume only with a margin on both measures
        recovered = (
            reading.available_bytes >= self.min_available_bytes + self.resume_margin_bytes
            and reading.used_percent < self.resume_below_percent
        )
        if recovered:
            self.paused_reason = None
            return True
        self.paused_reason = self._reason(reading, low)
        return False

    def _reason(self, reading: MemoryReading, low: bool) -> str:
        if low:
            return (f"memory: {format_size(reading.available_bytes)} available "
                    f"< {format_size(self.min_available_bytes)}")
        return f"memory {reading.used_percent:.0f} % used > {self.pause_above_percent:g} %"


def worker_budget(reading: MemoryReading, *, max_workers: int, child_budget_bytes: int,
                  reserve_bytes: int, cores: int | None = None) -> int:
    """Return how many children may run: min(cores, max_workers, spare memory / per-child)."""
    cores = cores or os.cpu_count() or 1
    limit = cores if max_workers <= 0 else min(cores, max_workers)
    spare = reading.available_bytes - reserve_bytes
    by_memory = max(0, spare // max(1, child_budget_bytes))
    return int(max(0, min(limit, by_memory)))
