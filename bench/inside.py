"""Drivers that run as the wrapped command (or bare, for the baseline) and time execs there.

Run as a script, ``python3 bench/inside.py burst|throughput ...``; standard library only, since
it starts inside a session where every exec it makes is mediated. Each prints one JSON line.
It is not imported by the driver process.
"""

from __future__ import annotations

import json
import os
import sys
import time

TRUE = "/usr/bin/true"


def _fork_waiting(count: int, body: list[str], per_worker: int) -> tuple[list[int], int]:
    """Forks ``count`` processes that block on a pipe; returns their pids and the write end."""
    read_end, write_end = os.pipe()
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            os.read(read_end, 1)
            if per_worker == 0:
                os.execv(TRUE, body)  # noqa: S606 - the exec is what is timed
            for _round in range(per_worker):
                # posix_spawn(3) is the lightest way to start a child from Python.
                child = os.posix_spawn(TRUE, body, os.environ)
                os.waitpid(child, 0)
            os._exit(0)
        pids.append(pid)
    os.close(read_end)
    return pids, write_end


def _release_and_wait(pids: list[int], write_end: int) -> float:
    """Releases every waiting process at once; returns seconds until the last has exited."""
    started = time.perf_counter()
    os.write(write_end, b"x" * len(pids))
    failed = 0
    for pid in pids:
        _pid, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    elapsed = time.perf_counter() - started
    os.close(write_end)
    if failed:
        raise SystemExit(f"{failed} of {len(pids)} processes failed")
    return elapsed


def parent_peak_rss_kib() -> int | None:
    """VmHWM of the parent (the wrapper, when run inside a session), from proc(5) status."""
    try:
        with open(f"/proc/{os.getppid()}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main(argv: list[str]) -> int:
    mode, count, rounds = argv[0], int(argv[1]), int(argv[2])
    walls = []
    for _ in range(rounds):
        if mode == "burst":
            # Every process execs once, all released together.
            pids, write_end = _fork_waiting(count, ["true"], 0)
        else:
            per_worker = int(argv[3])
            pids, write_end = _fork_waiting(count, ["true"], per_worker)
        walls.append(_release_and_wait(pids, write_end))
    print(json.dumps({"wall_s": walls, "parent_vm_hwm_kib": parent_peak_rss_kib()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
