"""The load test of benchmarks/, run as a test against the session's app: its pass/fail (zero
errors, bounded memory growth of the app's process) is behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from greenlens.core.examples import example_files

from .conftest import ROOT


def test_eight_clients_fifty_requests_each_without_errors_or_memory_growth(app, tmp_path):
    if not (example_files("leaf") and example_files("cactus")):
        pytest.skip("example images not copied in (make examples with the data folder present)")
    url, process = app
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--clients", "8", "--requests", "50",
         "--url", url, "--pid", str(process.pid)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "BENCHMARK_RESULTS": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "load_test.json").read_text())
    row = result["rows"][0]
    assert row["requests"] == 400
    assert row["errors"] == 0
    assert row["warm_up_errors"] == 0
    assert row["rss_growth_mb"] < 50, row


def test_a_full_queue_refuses_at_once_with_try_again(tmp_path):
    """More heavy requests than the queue holds: some answered, the rest refused with Gradio's "Queue is
    full ... try again" (never a hang nor another error); the app is started with a queue of 2."""
    if not example_files("leaf"):
        pytest.skip("example images not copied in (make examples with the data folder present)")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--overflow"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, env={**os.environ, "BENCHMARK_RESULTS": str(tmp_path)})
    assert run.returncode == 0, run.stdout + run.stderr
    row = json.loads((tmp_path / "queue_overflow.json").read_text())["rows"][0]
    assert row["answered"] >= 1, row
    assert row["refused"] >= 1, row
    assert row["error"] == 0, row
