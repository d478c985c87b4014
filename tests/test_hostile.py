"""Hostile and unlucky uploads through the running app over HTTP, with the app's memory measured
while they are served (benchmarks/hostile_inputs.py, run against the session's app): a zip bomb, a
zip of 100,000 entries, a 30,000 x 30,000 PNG, an EPS named .jpg, eight 8,000 x 8,000 JPEGs at once and eight requests at
once with one truncated file; and survey uploads that attack the server: VRTs named .tif reading a
local file, a text file's raw bytes or a loopback URL, a WMS description, a GeoTIFF naming an overview
file by URL and a sparse 200,000 x 200,000 GeoTIFF. Every good request is answered, every bad one
refused with its own message (the survey ones within seconds), the loopback server gets no request,
/classify_leaf stays within 2x its time meanwhile, the app's peak memory stays within the benchmark's
stated bound, and it serves afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from greenlens.core.examples import example_files

from .conftest import ROOT


def test_hostile_uploads_are_refused_or_answered_within_bounded_memory(app, tmp_path):
    if not example_files("leaf"):
        pytest.skip("example images not copied in (make examples with the data folder present)")
    url, process = app
    script = str(ROOT / "benchmarks" / "hostile_inputs.py")
    run = subprocess.run([sys.executable, script, "--url", url, "--pid", str(process.pid)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "BENCHMARK_RESULTS": str(tmp_path)})
    result = json.loads((tmp_path / "hostile_inputs.json").read_text())
    failed = [(row["case"], outcome) for row, outcome in zip(result["rows"], result["outcomes"]) if not row["passed"]]
    assert not failed, failed
    assert result["rss_growth_mb"] < result["peak_growth_limit_mb"] == 250, result
    assert result["loopback_requests"] == [], result["loopback_requests"]
    assert result["classify_slowdown"] <= result["classify_slowdown_limit"] == 2, result
    assert run.returncode == 0, run.stdout + run.stderr
    assert process.poll() is None, run.stdout + run.stderr
