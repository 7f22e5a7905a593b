"""Runs the benchmark scenarios, writes ``bench/results.json`` and prints the table.

Every figure is a ratio or a difference against bare execution measured in the same run, since
this machine is noisy; repeated runs are summarized by their median. The scenarios are those of
the benchmark issue: exec loop, startup, concurrency, memory and scaling. Sizes come from a
Sizes value, so the smoke test runs this same code with tiny ones. Targets are compared here,
never in tests.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.agent import AgentProcess

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
INSIDE = BENCH_DIR / "inside.py"
DEFAULT_OUTPUT = BENCH_DIR / "results.json"
DELAY_MS = 50
AGENT_WORKERS = 64
# Per-exec latencies are taken in this many sessions per mode, interleaved across modes.
LATENCY_CHUNKS = 4

Results = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How much of each scenario to run."""

    loop_execs: int = 1000
    loop_repeats: int = 5
    latency_execs: int = 2000
    startup_repeats: int = 15
    probe_repeats: int = 3
    burst_processes: int = 64
    burst_rounds: int = 7
    throughput_levels: tuple[int, ...] = (1, 8, 64)
    throughput_execs: int = 256
    throughput_rounds: int = 3
    allowlist_sizes: tuple[int, ...] = (10, 100, 1000)
    argv_sizes: tuple[int, ...] = (1, 100, 1000)
    agent_argv_sizes: tuple[int, ...] = (1, 100, 254)
    scaling_execs: int = 500
    scaling_repeats: int = 3


SMOKE = Sizes(
    loop_execs=10,
    loop_repeats=1,
    latency_execs=20,
    startup_repeats=1,
    probe_repeats=1,
    burst_processes=8,
    burst_rounds=1,
    throughput_execs=64,
    throughput_rounds=1,
    scaling_execs=5,
    scaling_repeats=1,
)


@dataclass(frozen=True)
class Target:
    """One row of the issue's target table: a figure, its bound, and which way is better."""

    figure: str
    path: tuple[str, ...]
    bound: float
    unit: str
    at_most: bool = True


TARGETS = (
    Target("allowlisted exec, ratio against bare", ("exec_loop", "allowlist", "ratio"), 1.20, ""),
    Target(
        "agent-authorized exec, added p50",
        ("exec_loop", "agent", "latency_added_p50_us"),
        1200,
        "us",
    ),
    Target(
        "agent-authorized exec, added p99",
        ("exec_loop", "agent", "latency_added_p99_us"),
        3000,
        "us",
    ),
    Target(
        "64 concurrent execs behind a 50 ms delay, wall",
        ("concurrency", "burst", "wrapped_wall_ms"),
        150,
        "ms",
    ),
    Target(
        "start to first exec of the user's command",
        ("startup", "first_exec_added_ms"),
        250,
        "ms",
    ),
    Target("supervisor peak RSS", ("memory", "peak_rss_mib"), 50, "MiB"),
)


# --- measuring -----------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` from 0 to 100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[rank - 1]


def epoch_us(text: str) -> int:
    """bash's EPOCHREALTIME (seconds with six decimals) as whole microseconds, exactly."""
    whole, _, fraction = text.replace(",", ".").partition(".")
    return int(whole) * 1_000_000 + int(fraction.ljust(6, "0")[:6])


class Bench:
    """Runs commands bare and wrapped against the agents of this run."""

    def __init__(self, workdir: Path, endpoints: dict[str, str], allowlist: Path) -> None:
        self.workdir = workdir
        self.endpoints = endpoints
        self.allowlist = allowlist
        # bench.startup_probe must import from this repository wherever the run started.
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        self.environment = dict(os.environ, LC_ALL="C", PYTHONPATH=path)

    def wrapper_argv(
        self, command: Sequence[str], agent: str = "pass", allowlist: Path | None = None
    ) -> list[str]:
        return [
            sys.executable,
            "-m",
            "session_wrapper",
            "--user",
            "bench",
            "--user-uid",
            str(os.getuid()),
            "--user-gid",
            str(os.getgid()),
            "--service-endpoint",
            self.endpoints[agent],
            "--fail-policy",
            "closed",
            "--authorization-timeout-ms",
            "5000",
            "--allowlist",
            str(allowlist or self.allowlist),
            "--",
            *command,
        ]

    def run(self, argv: Sequence[str]) -> str:
        """Runs a command to completion; returns its stdout, or raises with its stderr."""
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self.environment, timeout=300, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[-3:])} exited {done.returncode}: {done.stderr.strip()[-500:]}"
            )
        return done.stdout

    def command(
        self,
        command: Sequence[str],
        mode: str,
        allowlist: Path | None = None,
    ) -> list[str]:
        """``command`` bare, or wrapped with the fast allowlist ("allowlist") or the agent."""
        if mode == "bare":
            return list(command)
        if mode == "allowlist":
            return self.wrapper_argv(command, "pass", allowlist)
        return self.wrapper_argv(command, mode, self.workdir / "seq-only.allow")

    def loop_seconds(
        self, mode: str, execs: int, argv_entries: int = 1, allowlist: Path | None = None
    ) -> float:
        """Seconds of bash's loop of ``execs`` sequential /bin/true, timed inside the session."""
        setup = f"a=($(seq {argv_entries - 1})); " if argv_entries > 1 else ""
        call = '/bin/true "${a[@]}"' if argv_entries > 1 else "/bin/true"
        script = (
            f"{setup}s=$EPOCHREALTIME; for i in $(seq {execs}); do {call}; done; "
            'echo "loop $s $EPOCHREALTIME"'
        )
        out = self.run(self.command(["bash", "-c", script], mode, allowlist))
        _word, start, end = out.split()[-3:]
        return (epoch_us(end) - epoch_us(start)) / 1e6

    def exec_latencies_us(self, mode: str, execs: int) -> list[int]:
        """Microseconds each /bin/true took (fork, exec, exit, wait) in bash's loop."""
        script = (
            f"for i in $(seq {execs}); do t[i]=$EPOCHREALTIME; /bin/true; done; "
            f't[{execs}+1]=$EPOCHREALTIME; echo "times ${{t[*]}}"'
        )
        out = self.run(self.command(["bash", "-c", script], mode))
        stamps = [epoch_us(word) for word in out.split()[1:]]
        return [b - a for a, b in itertools.pairwise(stamps)]

    def wall_seconds(self, argv: Sequence[str]) -> float:
        started = time.perf_counter()
        self.run(argv)
        return time.perf_counter() - started

    def inside(self, driver: str, mode: str, *args: int) -> dict[str, Any]:
        """Runs a bench/inside.py driver bare or wrapped (``mode``); returns its JSON line."""
        script = [sys.executable, "-I", str(INSIDE), driver, *(str(a) for a in args)]
        argv = self.command(script, mode)
        result: dict[str, Any] = json.loads(self.run(argv).splitlines()[-1])
        return result


# --- scenarios -----------------------------------------------------------------------------


def exec_loop(bench: Bench, sizes: Sizes) -> Results:
    """Scenario 1: sequential /bin/true from bash, bare, allowlisted and agent-authorized."""
    modes = ("bare", "allowlist", "pass")
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    # Interleaved, so that a noisy moment hits every mode alike.
    for _ in range(sizes.loop_repeats):
        for mode in modes:
            seconds[mode].append(bench.loop_seconds(mode, sizes.loop_execs))
    latencies: dict[str, list[int]] = {mode: [] for mode in modes}
    chunk = max(1, sizes.latency_execs // LATENCY_CHUNKS)
    for _ in range(LATENCY_CHUNKS):
        for mode in modes:
            latencies[mode] += bench.exec_latencies_us(mode, chunk)
    # One long session per wrapped mode: does an exec late in it cost more than an early one?
    long_sessions = {m: bench.exec_latencies_us(m, sizes.latency_execs) for m in modes[1:]}

    bare = statistics.median(seconds["bare"])
    results: Results = {
        "execs": sizes.loop_execs,
        "repeats": sizes.loop_repeats,
        "latency_execs": len(latencies["bare"]),
        "bare": {
            "loop_ms": bare * 1e3,
            "per_exec_us": bare * 1e6 / sizes.loop_execs,
            "latency_p50_us": percentile(latencies["bare"], 50),
            "latency_p99_us": percentile(latencies["bare"], 99),
        },
    }
    for mode, name in (("allowlist", "allowlist"), ("pass", "agent")):
        wrapped = statistics.median(seconds[mode])
        latency = latencies[mode]
        long_session = long_sessions[mode]
        tenth = max(1, len(long_session) // 10)
        results[name] = {
            "loop_ms": wrapped * 1e3,
            "added_us_per_exec": (wrapped - bare) * 1e6 / sizes.loop_execs,
            "ratio": wrapped / bare,
            "latency_p50_us": percentile(latency, 50),
            "latency_p99_us": percentile(latency, 99),
            "latency_added_p50_us": percentile(latency, 50) - percentile(latencies["bare"], 50),
            "latency_added_p99_us": percentile(latency, 99) - percentile(latencies["bare"], 99),
            # Session length: the last tenth of the execs against the first tenth.
            "late_minus_early_p50_us": statistics.median(long_session[-tenth:])
            - statistics.median(long_session[:tenth]),
        }
    return results


def startup(bench: Bench, sizes: Sizes) -> Results:
    """Scenario 2: the wrapper end to end against bare /bin/true and an empty Python."""
    walls: dict[str, list[float]] = {"bare_true": [], "python_pass": [], "wrapped_true": []}
    first_exec: dict[str, list[float]] = {"bare": [], "wrapped": []}
    date = ["/usr/bin/date", "+%s%N"]
    for _ in range(sizes.startup_repeats):
        walls["bare_true"].append(bench.wall_seconds(["/bin/true"]))
        walls["python_pass"].append(bench.wall_seconds([sys.executable, "-c", "pass"]))
        walls["wrapped_true"].append(bench.wall_seconds(bench.command(["/bin/true"], "allowlist")))
        for mode, argv in (("bare", date), ("wrapped", bench.command(date, "allowlist"))):
            started = time.time_ns()
            printed = int(bench.run(argv).split()[-1])
            first_exec[mode].append((printed - started) / 1e9)

    medians = {name: statistics.median(values) * 1e3 for name, values in walls.items()}
    probes = [
        json.loads(
            bench.run(
                [sys.executable, "-m", "bench.startup_probe", bench.endpoints["pass"]]
            ).splitlines()[-1]
        )
        for _ in range(sizes.probe_repeats)
    ]
    parts = {name: statistics.median(probe[name] for probe in probes) * 1e3 for name in probes[0]}
    imports = sum(value for name, value in parts.items() if name.startswith("import_"))
    connect = parts["first_session_request"] - parts["warm_session_request"]
    shares = {
        "imports": imports,
        "agent connect": connect,
        "session request": parts["warm_session_request"],
    }
    return {
        "repeats": sizes.startup_repeats,
        "bare_true_ms": medians["bare_true"],
        "python_pass_ms": medians["python_pass"],
        "wrapped_true_ms": medians["wrapped_true"],
        "added_vs_bare_true_ms": medians["wrapped_true"] - medians["bare_true"],
        "added_vs_python_pass_ms": medians["wrapped_true"] - medians["python_pass"],
        "ratio_vs_python_pass": medians["wrapped_true"] / medians["python_pass"],
        "first_exec_bare_ms": statistics.median(first_exec["bare"]) * 1e3,
        "first_exec_wrapped_ms": statistics.median(first_exec["wrapped"]) * 1e3,
        "first_exec_added_ms": (
            statistics.median(first_exec["wrapped"]) - statistics.median(first_exec["bare"])
        )
        * 1e3,
        "breakdown_ms": parts,
        "agent_connect_ms": connect,
        "dominant": max(shares, key=lambda name: shares[name]),
    }


def concurrency(bench: Bench, sizes: Sizes) -> Results:
    """Scenario 3: a burst of execs behind the agent's delay, and throughput with no delay."""
    count, rounds = sizes.burst_processes, sizes.burst_rounds
    wrapped = bench.inside("burst", "delay", count, rounds)
    bare = bench.inside("burst", "bare", count, rounds)
    wall_ms = statistics.median(wrapped["wall_s"]) * 1e3
    results: Results = {
        "burst": {
            "processes": count,
            "rounds": rounds,
            "delay_ms": DELAY_MS,
            "wrapped_wall_ms": wall_ms,
            "wrapped_wall_max_ms": max(wrapped["wall_s"]) * 1e3,
            "bare_wall_ms": statistics.median(bare["wall_s"]) * 1e3,
            "ratio_vs_delay": wall_ms / DELAY_MS,
            "added_vs_bare_ms": wall_ms - statistics.median(bare["wall_s"]) * 1e3,
        },
        "throughput": {},
        "peak_rss_kib": {"burst": wrapped["parent_vm_hwm_kib"]},
    }
    for level in sizes.throughput_levels:
        per_worker = max(1, sizes.throughput_execs // level)
        execs = per_worker * level
        measured = {}
        for mode in ("pass", "bare"):
            run = bench.inside("throughput", mode, level, sizes.throughput_rounds, per_worker)
            measured[mode] = execs / statistics.median(run["wall_s"])
            if mode == "pass":
                results["peak_rss_kib"][f"throughput_{level}"] = run["parent_vm_hwm_kib"]
        results["throughput"][str(level)] = {
            "execs": execs,
            "wrapped_per_s": measured["pass"],
            "bare_per_s": measured["bare"],
            "ratio": measured["pass"] / measured["bare"],
        }
    return results


def memory(concurrency_results: Results) -> Results:
    """Scenario 4: the wrapper's VmHWM, read by the driver inside each scenario-3 session."""
    peaks = {k: v for k, v in concurrency_results["peak_rss_kib"].items() if v is not None}
    if not peaks:
        raise RuntimeError("no VmHWM could be read from the wrapper's /proc status")
    return {"peak_rss_mib": max(peaks.values()) / 1024, "per_session_kib": peaks}


def scaling(bench: Bench, sizes: Sizes) -> Results:
    """Scenario 5: added time per exec by allowlist size and by argv length."""
    execs, repeats = sizes.scaling_execs, sizes.scaling_repeats

    def added_us(mode: str, argv_entries: int = 1, allowlist: Path | None = None) -> float:
        bare, wrapped = [], []
        for _ in range(repeats):
            bare.append(bench.loop_seconds("bare", execs, argv_entries))
            wrapped.append(bench.loop_seconds(mode, execs, argv_entries, allowlist))
        return (statistics.median(wrapped) - statistics.median(bare)) * 1e6 / execs

    by_allowlist = {}
    for size in sizes.allowlist_sizes:
        path = bench.workdir / f"size-{size}.allow"
        fillers = [f"/opt/bench-not-there/entry-{n}" for n in range(max(0, size - 2))]
        path.write_text("\n".join(["/usr/bin/true", "/usr/bin/seq", *fillers]) + "\n")
        by_allowlist[str(size)] = added_us("allowlist", allowlist=path)
    return {
        "execs": execs,
        "repeats": repeats,
        "allowlist_entries_added_us": by_allowlist,
        # The fast path reads only the path, so argv length should not matter there.
        "argv_allowlisted_added_us": {
            str(n): added_us("allowlist", argv_entries=n) for n in sizes.argv_sizes
        },
        # The agent path reads argv twice and sends it; TACACS+ caps a request at 255 args,
        # so 254 argv entries is the longest that is sent rather than refused.
        "argv_agent_added_us": {
            str(n): added_us("pass", argv_entries=n) for n in sizes.agent_argv_sizes
        },
    }


# --- running and reporting -----------------------------------------------------------------


def write_inputs(workdir: Path) -> None:
    """The agents' policies and the allowlists of this run."""
    (workdir / "pass.toml").write_text('[default]\nstatus = "PASS_ADD"\n')
    (workdir / "delay.toml").write_text(
        '[[rule]]\nname = "delayed"\nrpc = "authorization"\ncmd = "/usr/bin/true"\n'
        f'status = "PASS_ADD"\ndelay_ms = {DELAY_MS}\n\n[default]\nstatus = "PASS_ADD"\n'
    )
    # seq starts every loop; date marks the first exec in the startup scenario.
    (workdir / "fast.allow").write_text("/usr/bin/true\n/usr/bin/seq\n/usr/bin/date\n")
    (workdir / "seq-only.allow").write_text("/usr/bin/seq\n")


def run_all(sizes: Sizes, output: Path | None) -> Results:
    """Runs every scenario; writes ``output`` (unless None) and returns the results."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-", dir="/tmp") as scratch:
        workdir = Path(scratch)
        workdir.chmod(0o755)
        write_inputs(workdir)
        with (
            AgentProcess(workdir / "pass.toml", workdir / "pass.sock", AGENT_WORKERS) as passing,
            AgentProcess(workdir / "delay.toml", workdir / "delay.sock", AGENT_WORKERS) as slow,
        ):
            bench = Bench(workdir, {"pass": passing, "delay": slow}, workdir / "fast.allow")
            scenarios: Results = {}
            scenarios["exec_loop"] = exec_loop(bench, sizes)
            scenarios["startup"] = startup(bench, sizes)
            scenarios["concurrency"] = concurrency(bench, sizes)
            scenarios["memory"] = memory(scenarios["concurrency"])
            scenarios["scaling"] = scaling(bench, sizes)
    results: Results = {
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "wrapper_package": _wrapper_package(),
        "sizes": asdict(sizes),
        "duration_s": time.monotonic() - started,
        "scenarios": scenarios,
        "targets": [_judge(target, scenarios) for target in TARGETS],
    }
    if output is not None:
        output.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _wrapper_package() -> str:
    """Where the measured session_wrapper was imported from (PYTHONPATH may point elsewhere)."""
    done = subprocess.run(
        [sys.executable, "-c", "import session_wrapper; print(session_wrapper.__path__[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _judge(target: Target, scenarios: Results) -> dict[str, Any]:
    value: Any = scenarios
    for key in target.path:
        value = value[key]
    measured = float(value)
    met = measured <= target.bound if target.at_most else measured >= target.bound
    return {
        "figure": target.figure,
        "measured": measured,
        "target": f"{'<=' if target.at_most else '>='} {target.bound:g} {target.unit}".strip(),
        "met": met,
    }


def table(results: Results) -> str:
    """The figures as a Markdown table, as pasted into the README."""
    s = results["scenarios"]
    loop, start, conc = s["exec_loop"], s["startup"], s["concurrency"]
    scale, burst = s["scaling"], conc["burst"]
    rows = [
        ("exec loop: bare /bin/true", f"{loop['bare']['per_exec_us']:.0f} us per exec"),
    ]
    for name, label in (("allowlist", "allowlisted"), ("agent", "agent-authorized")):
        figures = loop[name]
        rows += [
            (
                f"exec loop: {label}",
                f"+{figures['added_us_per_exec']:.0f} us per exec, ratio {figures['ratio']:.2f}",
            ),
            (
                f"exec latency: {label}, added",
                f"p50 +{figures['latency_added_p50_us']:.0f} us, "
                f"p99 +{figures['latency_added_p99_us']:.0f} us",
            ),
            (
                f"session length: {label}",
                f"{figures['late_minus_early_p50_us']:+.0f} us (last tenth vs first, p50)",
            ),
        ]
    parts = start["breakdown_ms"]
    imports = sum(v for k, v in parts.items() if k.startswith("import_"))
    rows += [
        (
            "startup: wrapper -- /bin/true",
            f"{start['wrapped_true_ms']:.0f} ms; bare /bin/true {start['bare_true_ms']:.1f} ms, "
            f"python -c pass {start['python_pass_ms']:.0f} ms",
        ),
        ("startup: start to first exec, added", f"{start['first_exec_added_ms']:.0f} ms"),
        (
            "startup: breakdown",
            f"imports {imports:.0f} ms (grpc {parts['import_grpc']:.0f}, pyseccomp "
            f"{parts['import_pyseccomp']:.0f}), connect {start['agent_connect_ms']:.1f} ms, "
            f"session request {parts['warm_session_request']:.1f} ms, supervisor threads "
            f"{parts['supervisor_start']:.1f} ms; dominant: {start['dominant']}",
        ),
        (
            f"concurrency: {burst['processes']} execs behind {burst['delay_ms']} ms",
            f"{burst['wrapped_wall_ms']:.0f} ms wall ({burst['ratio_vs_delay']:.2f} x delay; "
            f"bare {burst['bare_wall_ms']:.0f} ms)",
        ),
    ]
    for level, figures in conc["throughput"].items():
        rows.append(
            (
                f"throughput, {level} concurrent, no delay",
                f"{figures['wrapped_per_s']:.0f} execs/s (bare {figures['bare_per_s']:.0f}, "
                f"ratio {figures['ratio']:.2f})",
            )
        )
    rows.append(("memory: supervisor peak RSS", f"{s['memory']['peak_rss_mib']:.1f} MiB"))
    rows += [
        (
            "scaling: allowlist entries, added per exec",
            ", ".join(f"{n}: +{v:.0f} us" for n, v in scale["allowlist_entries_added_us"].items()),
        ),
        (
            "scaling: argv entries, allowlisted",
            ", ".join(f"{n}: +{v:.0f} us" for n, v in scale["argv_allowlisted_added_us"].items()),
        ),
        (
            "scaling: argv entries, agent-authorized",
            ", ".join(f"{n}: +{v:.0f} us" for n, v in scale["argv_agent_added_us"].items()),
        ),
    ]
    lines = ["| figure | measured |", "|---|---|"]
    lines += [f"| {figure} | {value} |" for figure, value in rows]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for judged in results["targets"]:
        lines.append(
            f"| {judged['figure']} {judged['target']} | {judged['measured']:.2f} | "
            f"{'yes' if judged['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="What mediation costs, against bare exec."
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; figures mean little")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON file")
    args = parser.parse_args(argv)
    try:
        results = run_all(SMOKE if args.smoke else Sizes(), args.output)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print(table(results))
    print(f"\n{results['duration_s']:.0f} s; results in {args.output}")
    return 0
