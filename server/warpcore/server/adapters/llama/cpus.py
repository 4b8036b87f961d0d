"""How many threads a local model computes with when neither its request nor LLAMA_THREADS says: the cores this
process may use.

llama-cpp-python's own defaults are half the machine's logical CPUs for generation and all of them for prompts,
counted on the whole machine: one thread of two on a small host, and on a Kubernetes node dozens of threads under a
quota of two CPUs, whose spinning OpenMP threads then wait out every throttled period.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

SYSFS_CPUS = Path("/sys/devices/system/cpu")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cores(
    cpus: Iterable[int] | None = None,
    sysfs_cpus: Path = SYSFS_CPUS,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_CGROUP,
) -> int:
    """The physical cores among `cpus` (default: the CPUs this process may run on), capped by its cgroup's CPU quota
    rounded up; at least 1. A core's hyperthreads count once: llama.cpp's kernels keep a core's arithmetic units busy
    with one thread, and a second one on the same core only adds a thread to wait for at every barrier."""
    allowed = set(os.sched_getaffinity(0) if cpus is None else cpus)
    cores = len({_core_of(cpu, sysfs_cpus) for cpu in allowed})
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(cores, 1)


def _core_of(cpu: int, sysfs_cpus: Path) -> str:
    """The CPUs that share `cpu`'s core, as the kernel lists them (the same text for each of them); the CPU alone
    where the topology is not readable."""
    try:
        return (sysfs_cpus / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip()
    except OSError:
        return str(cpu)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), or
    None when unlimited or unknown. A limit set higher up the tree is not looked for: containers see their own
    cgroup as the root."""
    for path in _cgroup_v2_dirs(cgroup_root, proc_cgroup):
        try:
            quota, period = (path / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    for controller in ("cpu", "cpu,cpuacct"):
        try:
            quota_us = int((cgroup_root / controller / "cpu.cfs_quota_us").read_text())
            period_us = int((cgroup_root / controller / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


def _cgroup_v2_dirs(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    """This process's own cgroup v2 directory (from /proc/self/cgroup's `0::` line), then the root."""
    dirs = []
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                dirs.append(cgroup_root / line[3:].lstrip("/"))
    except OSError:
        pass
    return [*dirs, cgroup_root]
