"""The benchmark suite at tiny sizes, so that it cannot rot: every scenario yields every figure.

It runs the documented command, ``python -m bench``, with ``--smoke``. It checks that the run
succeeds and that each figure is a finite number; it never checks how fast anything was, since
timing on a shared test machine means nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# The figures each scenario must report; nested keys are joined with dots.
EXPECTED = {
    "exec_loop": [
        "bare.per_exec_us",
        "bare.latency_p50_us",
        "bare.latency_p99_us",
        "allowlist.added_us_per_exec",
        "allowlist.ratio",
        "allowlist.latency_added_p50_us",
        "allowlist.latency_added_p99_us",
        "allowlist.late_minus_early_p50_us",
        "agent.added_us_per_exec",
        "agent.ratio",
        "agent.latency_added_p50_us",
        "agent.latency_added_p99_us",
        "agent.late_minus_early_p50_us",
    ],
    "startup": [
        "bare_true_ms",
        "python_pass_ms",
        "wrapped_true_ms",
        "added_vs_bare_true_ms",
        "added_vs_python_pass_ms",
        "first_exec_added_ms",
        "agent_connect_ms",
        "breakdown_ms.import_grpc",
        "breakdown_ms.import_pyseccomp",
        "breakdown_ms.first_session_request",
        "breakdown_ms.warm_session_request",
        "breakdown_ms.supervisor_start",
    ],
    "concurrency": [
        "burst.wrapped_wall_ms",
        "burst.bare_wall_ms",
        "burst.ratio_vs_delay",
        "throughput.1.wrapped_per_s",
        "throughput.1.bare_per_s",
        "throughput.8.wrapped_per_s",
        "throughput.64.wrapped_per_s",
        "throughput.64.ratio",
    ],
    "memory": ["peak_rss_mib"],
    "scaling": [
        "allowlist_entries_added_us.10",
        "allowlist_entries_added_us.100",
        "allowlist_entries_added_us.1000",
        "argv_allowlisted_added_us.1",
        "argv_allowlisted_added_us.100",
        "argv_allowlisted_added_us.1000",
        "argv_agent_added_us.1",
        "argv_agent_added_us.100",
        "argv_agent_added_us.254",
    ],
}


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    value: Any = tree
    for key in dotted.split("."):
        value = value[key]
    return value


@pytest.mark.timeout(180)
def test_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| figure | measured |" in done.stdout

    results = json.loads(output.read_text())
    scenarios = results["scenarios"]
    assert sorted(scenarios) == sorted(EXPECTED)
    for scenario, figures in EXPECTED.items():
        for figure in figures:
            value = _lookup(scenarios[scenario], figure)
            assert isinstance(value, int | float), f"{scenario}.{figure} is {value!r}"
            assert math.isfinite(value), f"{scenario}.{figure} is {value}"

    # Memory comes from the wrapper's own /proc status, so it cannot be zero.
    assert scenarios["memory"]["peak_rss_mib"] > 0
    judged = {row["figure"]: row for row in results["targets"]}
    assert len(judged) == 6
    for row in judged.values():
        assert math.isfinite(row["measured"]) and isinstance(row["met"], bool)
