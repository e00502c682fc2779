"""Sharing this machine's cores between Tailor trainings, and with whatever else runs on it.

PyTorch's OpenMP threads wait for each other at the end of every parallel region. When another process
takes a core from one of them, the others used to spin for their whole spin count at each barrier, and two
trainings on two cores ran 7-20x slower than alone instead of 2x. Three things prevent it:

1. Passive waiting (``OMP_WAIT_POLICY=PASSIVE``, set by ``import tailor`` before PyTorch loads its OpenMP
   runtime): a waiting thread sleeps and gives its core back.
2. A machine-wide lease (:class:`CoreLease`) under the storage root: each running training holds a lease
   file locked for its lifetime (the OS drops the lock when the process dies, even on ``kill -9``), and
   the trainings split the usable cores between them, oldest lease first, so two trainings run one thread
   each instead of four threads on two cores.
3. Foreign load: cores that other programs keep busy (read from ``/proc/stat``, minus this process's own
   time) are not counted as free, so a training beside a compile job uses the cores that are left.

Training loops call :func:`rebalance` at step boundaries; it re-reads the leases and the load at most once
a second and changes PyTorch's thread count when this process's share changed. Measured on 2 cores
(``bench/cpu_share.py``): see the README's "Sharing the machine".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
from pathlib import Path

from tailor.runtime import usable_cores

log = logging.getLogger("tailor.cores")

LEASE_DIR = "cores"
LEASE_SUFFIX = ".lease"
REBALANCE_EVERY_S = 1.0
# A core counts as taken by another program when it was at least this busy over the last interval.
FOREIGN_BUSY_CORE = 0.6


def share_of(cores: int, holders: int, rank: int) -> int:
    """Threads for the holder at ``rank`` (0 = oldest) when ``holders`` trainings split ``cores``: an even
    split, the first ``cores % holders`` holders one more; at least one."""
    if holders <= 0:
        return max(1, cores)
    base, extra = divmod(cores, holders)
    return max(1, base + (1 if rank < extra else 0))


class CoreLease:
    """This process's claim on a share of the machine's cores, held from :meth:`acquire` to :meth:`release`.

    Args:
        root: the storage root; leases live in ``<root>/cores/``.
        what: a word for the lease file (``train``, ``chat``) shown to whoever looks at the folder.
    """

    def __init__(self, root: Path, what: str = "train"):
        self.dir = Path(root) / LEASE_DIR
        self.what = what
        self.path: Path | None = None
        self._fd: int | None = None

    def acquire(self) -> "CoreLease":
        """Create and lock this process's lease file (locked before it gets its visible name, so nobody
        ever sees it unlocked)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        name = f"{started:.6f}-{os.getpid()}-{secrets.token_hex(3)}"
        tmp = self.dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"pid": os.getpid(), "what": self.what, "started": started}).encode())
        self.path = self.dir / f"{name}{LEASE_SUFFIX}"
        os.rename(tmp, self.path)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the share back (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def holders(self) -> list[Path]:
        """Every live lease, oldest first (this one included); leases of dead processes are removed."""
        live = []
        for path in sorted(self.dir.glob(f"*{LEASE_SUFFIX}")):
            if path == self.path or _is_held(path):
                live.append(path)
        return live

    def threads(self, cores: int | None = None) -> int:
        """This lease's share of ``cores`` (default: the usable cores) among the live leases."""
        cores = cores or usable_cores()
        live = self.holders()
        rank = live.index(self.path) if self.path in live else len(live)
        return share_of(cores, max(len(live), rank + 1), rank)


def _is_held(path: Path) -> bool:
    """True when a live process holds ``path``'s lock; a lease left by a dead process is deleted."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may have just taken
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return False


class ForeignLoad:
    """How many of this process's usable cores other programs kept busy since the last reading.

    Reads the per-CPU lines of ``/proc/stat`` for the cores in this process's affinity mask, subtracts this
    process's own CPU time, and counts whole cores that were at least ``FOREIGN_BUSY_CORE`` busy. Where
    ``/proc/stat`` does not exist (not Linux), or a cgroup quota already bounds this process (a container's
    share is guaranteed; the host's other tenants are not ours to count), it reports 0.
    """

    def __init__(self):
        from tailor.runtime import cgroup_cpu_limit, usable_core_ids

        ids = usable_core_ids()
        quota = cgroup_cpu_limit()
        self.cpus = {f"cpu{i}" for i in ids}
        self.enabled = Path("/proc/stat").is_file() and (quota is None or quota >= len(ids))
        self._last = self._read() if self.enabled else None

    def _read(self) -> tuple[float, float, float]:
        """(busy seconds of our cores, their total seconds, this process's CPU seconds)."""
        busy = total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in self.cpus:
                    values = [int(v) for v in fields[1:]]
                    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                    total += sum(values[:8])
                    busy += sum(values[:8]) - idle
        times = os.times()
        return busy / tick, total / tick, times.user + times.system

    def busy_cores(self) -> int:
        """Whole cores other programs used since the previous call (0 on the first call)."""
        if not self.enabled:
            return 0
        now = self._read()
        busy, total, own = (a - b for a, b in zip(now, self._last))
        self._last = now
        wall = total / max(1, len(self.cpus))
        if wall <= 0:
            return 0
        foreign = max(0.0, busy - own) / wall  # cores' worth of other programs' work
        return int(foreign + (1 - FOREIGN_BUSY_CORE))


class _Balancer:
    """The process-wide state behind :func:`hold_cores` and :func:`rebalance`."""

    def __init__(self):
        self.lease: CoreLease | None = None
        self.load: ForeignLoad | None = None
        self.depth = 0
        self.threads: int | None = None
        self.next_check = 0.0


_BALANCER = _Balancer()


@contextlib.contextmanager
def hold_cores(root: Path, what: str = "train"):
    """Hold a core lease under ``root`` for the duration of a training (re-entrant: a nested call shares
    the outer lease), set PyTorch's threads to this process's share, and restore the usable cores after.

    Yields:
        The :class:`CoreLease`.
    """
    state = _BALANCER
    if state.depth == 0:
        state.lease = CoreLease(root, what).acquire()
        state.load = ForeignLoad()
        state.next_check = 0.0
    state.depth += 1
    try:
        rebalance(force=True)
        yield state.lease
    finally:
        state.depth -= 1
        if state.depth == 0:
            state.lease.release()
            state.lease = state.load = None
            state.threads = None
            _set_torch_threads(usable_cores())


def rebalance(force: bool = False) -> int | None:
    """Match PyTorch's thread count to this process's share of the cores now (at most once a second unless
    ``force``). Call it between training steps. A no-op without :func:`hold_cores`.

    Returns:
        The thread count in force, or None when no lease is held.
    """
    state = _BALANCER
    if state.lease is None:
        return None
    now = time.monotonic()
    if not force and now < state.next_check:
        return state.threads
    state.next_check = now + REBALANCE_EVERY_S
    cores = usable_cores()
    free = max(1, cores - state.load.busy_cores())
    threads = state.lease.threads(free)
    if threads != state.threads:
        if state.threads is not None:
            log.info("training threads %d -> %d (%d trainings share %d free cores)", state.threads, threads,
                     len(state.lease.holders()), free)
        state.threads = threads
    _set_torch_threads(threads)
    return threads


def current_threads() -> int | None:
    """The thread count :func:`rebalance` last set, or None when no lease is held."""
    return _BALANCER.threads if _BALANCER.lease is not None else None


def _set_torch_threads(n: int) -> None:
    """PyTorch's intra-op threads, where PyTorch is loaded (never imported just for this) and they differ
    (``setup_torch`` may have set all cores since)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def holding_cores(what: str):
    """Decorate a job function so it runs under :func:`hold_cores` in the storage root of its ``settings``
    keyword argument (default: the environment's)."""
    import functools

    def wrap(run):
        @functools.wraps(run)
        def held(*args, **kwargs):
            from tailor.settings import get_settings

            with hold_cores((kwargs.get("settings") or get_settings()).home, what):
                return run(*args, **kwargs)

        return held

    return wrap
