"""Core sharing between trainings: the lease split, dead holders swept, PyTorch's threads following the
share, cgroup quotas, passive OpenMP waiting and foreign load (mechanisms, not timings)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailor import cores
from tailor.cores import CoreLease, ForeignLoad, hold_cores, rebalance, share_of
from tailor.runtime import cgroup_cpu_limit, usable_cores

HOLDER = """
import sys, time
from tailor.cores import CoreLease
lease = CoreLease(sys.argv[1], "test").acquire()
print(lease.path, flush=True)
time.sleep(120)
"""


@pytest.fixture
def other_training(tmp_path):
    """Start another process that holds a lease under ``tmp_path``; yields (process, its lease path)."""
    procs = []

    def start():
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc, Path(proc.stdout.readline().strip())

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_share_of_splits_cores_evenly_oldest_first():
    assert [share_of(2, 1, 0)] == [2]
    assert [share_of(2, 2, r) for r in range(2)] == [1, 1]
    assert [share_of(2, 3, r) for r in range(3)] == [1, 1, 1]
    assert [share_of(8, 3, r) for r in range(3)] == [3, 3, 2]
    assert share_of(4, 0, 0) == 4


def test_two_leases_split_the_cores_and_a_killed_holder_is_swept(tmp_path, other_training):
    proc, other = other_training()
    lease = CoreLease(tmp_path).acquire()
    try:
        assert lease.holders() == [other, lease.path]  # the other one is older
        assert lease.threads(2) == 1
        assert lease.threads(5) == 2  # the older holder gets the odd core
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert lease.holders() == [lease.path]
        assert not other.exists()
        assert lease.threads(2) == 2
    finally:
        lease.release()
    assert not lease.path.exists()
    assert list((tmp_path / "cores").iterdir()) == []


def test_hold_cores_sets_torch_threads_to_the_share_and_restores_them(tmp_path, other_training, monkeypatch):
    import torch

    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(ForeignLoad, "busy_cores", lambda self: 0)
    torch.set_num_threads(2)
    other_training()
    with hold_cores(tmp_path) as lease:
        assert torch.get_num_threads() == 1
        with hold_cores(tmp_path) as inner:  # re-entrant: one lease per process
            assert inner is lease
        assert len(lease.holders()) == 2
        torch.set_num_threads(2)  # as setup_torch does on first use
        assert rebalance(force=True) == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    assert rebalance() is None  # no lease, no effect


def test_foreign_load_counts_a_busy_core(tmp_path):
    load = ForeignLoad()
    if not load.enabled or len(load.cpus) < 2:
        pytest.skip("needs /proc/stat and two usable cores")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        load.busy_cores()
        time.sleep(1.5)
        assert load.busy_cores() >= 1
    finally:
        hog.kill()
        hog.wait()


def _cgroup_tree(tmp_path: Path, proc_lines: str, files: dict[str, str]) -> tuple[str, str]:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "proc_cgroup").write_text(proc_lines)
    return str(tmp_path), str(tmp_path / "proc_cgroup")


def test_cgroup_v2_quota_tightest_ancestor_wins(tmp_path):
    root, proc = _cgroup_tree(tmp_path, "0::/kubepods/pod1/app\n", {
        "kubepods/cpu.max": "max 100000\n", "kubepods/pod1/cpu.max": "150000 100000\n",
        "kubepods/pod1/app/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v1_quota_and_no_limit(tmp_path):
    root, proc = _cgroup_tree(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/job\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/job/cpu.cfs_quota_us": "300000\n", "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(root, proc) == 3.0
    root, proc = _cgroup_tree(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, proc) is None
    assert cgroup_cpu_limit(str(tmp_path / "missing"), str(tmp_path / "missing" / "cgroup")) is None


def test_usable_cores_honours_tailor_threads(monkeypatch):
    monkeypatch.setenv("TAILOR_THREADS", "1")
    assert usable_cores() == 1
    monkeypatch.setenv("TAILOR_THREADS", "999")
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_import_tailor_makes_openmp_wait_passively_unless_set(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, tailor; print(os.environ['OMP_WAIT_POLICY'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
