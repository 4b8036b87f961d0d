"""A local model's default thread count: the physical cores this process may use, capped by its cgroup's CPU quota,
read from sysfs and cgroup trees laid out as the kernel lays them out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from warpcore.server.adapters.llama.cpus import cgroup_cpu_quota, usable_cores
from warpcore.server.adapters.llama.options import LlamaOptions
from warpcore.server.core.domain import LocalSettings


def sysfs(root: Path, siblings: dict[int, str]) -> Path:
    """/sys/devices/system/cpu with each CPU's hyperthread siblings."""
    for cpu, listed in siblings.items():
        topology = root / "cpus" / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(listed + "\n")
    return root / "cpus"


def cgroup_v2(root: Path, own: str, cpu_max: str | None) -> tuple[Path, Path]:
    """A cgroup v2 mount holding this process's cgroup `own`, with its cpu.max; and /proc/self/cgroup naming it."""
    directory = root / "cgroup" / own.lstrip("/")
    directory.mkdir(parents=True)
    if cpu_max is not None:
        (directory / "cpu.max").write_text(cpu_max + "\n")
    proc = root / "proc_cgroup"
    proc.write_text(f"0::{own}\n")
    return root / "cgroup", proc


# Eight logical CPUs, four cores of two hyperthreads each (siblings n and n + 4, as x86 numbers them).
EIGHT_ON_FOUR = {cpu: f"{cpu % 4},{cpu % 4 + 4}" for cpu in range(8)}


def test_hyperthreads_count_once(tmp_path: Path) -> None:
    cpus = sysfs(tmp_path, EIGHT_ON_FOUR)
    cgroup, proc = cgroup_v2(tmp_path, "/", None)
    assert usable_cores(range(8), cpus, cgroup, proc) == 4
    assert usable_cores([0, 4], cpus, cgroup, proc) == 1  # both threads of one core
    assert usable_cores([0, 1, 5], cpus, cgroup, proc) == 2


@pytest.mark.parametrize(("cpu_max", "cores"), [("max 100000", 4), ("150000 100000", 2), ("50000 100000", 1)])
def test_the_cgroup_quota_caps_the_cores_rounded_up(tmp_path: Path, cpu_max: str, cores: int) -> None:
    cpus = sysfs(tmp_path, EIGHT_ON_FOUR)
    cgroup, proc = cgroup_v2(tmp_path, "/kubepods/pod1/warpcore", cpu_max)
    assert usable_cores(range(8), cpus, cgroup, proc) == cores


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    controller = tmp_path / "cpu,cpuacct"
    controller.mkdir()
    (controller / "cpu.cfs_period_us").write_text("100000\n")
    (controller / "cpu.cfs_quota_us").write_text("250000\n")
    assert cgroup_cpu_quota(tmp_path, tmp_path / "no-such-file") == 2.5
    (controller / "cpu.cfs_quota_us").write_text("-1\n")  # unlimited
    assert cgroup_cpu_quota(tmp_path, tmp_path / "no-such-file") is None


def test_without_topology_each_cpu_is_a_core(tmp_path: Path) -> None:
    assert usable_cores([0, 1, 2], tmp_path / "none", tmp_path / "none", tmp_path / "none") == 3


def test_a_model_without_threads_set_gets_this_process_s_cores() -> None:
    # The real machine: as many as the CPUs this process may run on, never more, at least one.
    threads = LlamaOptions.resolve(LocalSettings(), {}).threads
    assert threads == usable_cores()
    assert 1 <= threads <= len(os.sched_getaffinity(0))
