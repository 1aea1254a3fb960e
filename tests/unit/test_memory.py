from __future__ import annotations

from pathlib import Path

from tunescout.workers.memory import MemoryGate, MemoryReading, cgroup_memory, read_memory, worker_budget

GiB = 2**30
MiB = 2**20


def test_gate_pauses_and_resumes_with_hysteresis() -> None:
    gate = MemoryGate(min_available_bytes=300 * 10**6, pause_above_percent=75,
                      resume_below_percent=70)
    assert not gate.update(MemoryReading(8 * GiB, 4 * GiB, "machine"))
    assert gate.update(MemoryReading(8 * GiB, 250 * 10**6, "machine"))  # below min_available
    assert gate.paused_reason is not None and "available" in gate.paused_reason
    # just above the threshold is not enough: no flapping
    assert not gate.update(MemoryReading(8 * GiB, 310 * 10**6, "machine"))
    assert gate.paused_reason is not None
    assert not gate.update(MemoryReading(8 * GiB, 2 * GiB, "machine"))  # 75 % used: not yet
    assert gate.update(MemoryReading(8 * GiB, 4 * GiB, "machine"))
    assert gate.paused_reason is None


def test_gate_pauses_on_usage_percent() -> None:
    gate = MemoryGate(min_available_bytes=100 * MiB, pause_above_percent=75, resume_below_percent=70)
    assert gate.update(MemoryReading(8 * GiB, int(1.5 * GiB), "machine"))  # 81 % used
    assert gate.paused_reason == "memory 81 % used > 75 %"
    assert not gate.update(MemoryReading(8 * GiB, int(2.2 * GiB), "machine"))  # 72.5 %: still paused
    assert gate.update(MemoryReading(8 * GiB, int(2.6 * GiB), "machine"))  # 67.5 %: resumed


def test_worker_budget_is_bounded_by_cores_config_and_memory() -> None:
    reading = MemoryReading(16 * GiB, 4 * GiB, "machine")
    budget = dict(child_budget_bytes=1 * GiB, reserve_bytes=512 * MiB)
    assert worker_budget(reading, max_workers=0, cores=8, **budget) == 3  # (4 - 0.5) / 1
    assert worker_budget(reading, max_workers=2, cores=8, **budget) == 2
    assert worker_budget(reading, max_workers=0, cores=1, **budget) == 1
    low = MemoryReading(16 * GiB, 1 * GiB, "machine")
    assert worker_budget(low, max_workers=0, cores=8, **budget) == 0  # no child fits: none starts


def test_cgroup_v2_and_v1_limits_are_read(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "system.slice" / "tunescout.service").mkdir(parents=True)
    (v2 / "system.slice" / "tunescout.service" / "memory.max").write_text("1073741824\n")
    (v2 / "system.slice" / "tunescout.service" / "memory.current").write_text("268435456\n")
    proc = tmp_path / "cgroup2"
    proc.write_text("0::/system.slice/tunescout.service\n")
    assert cgroup_memory(proc, v2) == (GiB, 256 * MiB)

    (v2 / "system.slice" / "tunescout.service" / "memory.max").write_text("max\n")
    assert cgroup_memory(proc, v2) is None  # no limit: the machine's figures rule

    v1 = tmp_path / "v1"
    (v1 / "memory" / "svc").mkdir(parents=True)
    (v1 / "memory" / "svc" / "memory.limit_in_bytes").write_text(str(2 * GiB))
    (v1 / "memory" / "svc" / "memory.usage_in_bytes").write_text(str(GiB))
    proc1 = tmp_path / "cgroup1"
    proc1.write_text("4:memory:/svc\n1:cpu:/\n")
    assert cgroup_memory(proc1, v1) == (2 * GiB, GiB)


def test_reading_this_machine() -> None:
    reading = read_memory()
    assert 0 < reading.available_bytes <= reading.total_bytes
    assert 0 <= reading.used_percent <= 100
