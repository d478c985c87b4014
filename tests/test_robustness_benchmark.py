"""benchmarks/robustness.py runs end to end on a few real test photos, and `--old-from` takes the old models' rows
from an earlier run instead of classifying again: the same rows, side by side with the new ones as a full run
writes them, and a run of another size is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def robustness(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    # Without PYTEST_CURRENT_TEST: scikit-image would answer a sample photo it cannot download with pytest.skip,
    # which the benchmark's fetching does not catch, where outside pytest it raises an error it does.
    environment = {**{k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
                   "BENCHMARK_RESULTS": str(tmp_path), "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, "benchmarks/robustness.py", "--tasks", "leaf", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=environment)


def test_old_rows_from_an_earlier_run_are_the_rows_it_classified(leaf_dir, tmp_path):
    first = robustness(tmp_path, "--images", "leaf=2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    full = json.loads((tmp_path / "robustness.json").read_text())
    (tmp_path / "full.json").write_text(json.dumps(full))
    again = robustness(tmp_path, "--images", "leaf=2", "--old-from", str(tmp_path / "full.json"), "--note", "a test")
    assert again.returncode == 0, again.stderr[-3000:]
    reused = json.loads((tmp_path / "robustness.json").read_text())
    assert reused["note"] == "a test"
    assert reused["old_rows_from"] == str(tmp_path / "full.json")
    # imagecorruptions draws impulse noise unseeded: its rows may differ between any two runs.
    def steady(rows):
        return [row for row in rows if row["condition"] != "impulse_noise"]
    assert steady(reused["rows"]) == steady(full["rows"])  # old and new side by side, in the same order
    assert [row["model"] for row in reused["rows"][:4]] == ["old", "new", "old", "new"]
    assert reused["out_of_distribution"] == full["out_of_distribution"]
    assert {key: value for key, value in reused["summary"].items() if "/old/" in key} == {
        key: value for key, value in full["summary"].items() if "/old/" in key}
    other_size = robustness(tmp_path, "--images", "leaf=3", "--old-from", str(tmp_path / "full.json"))
    assert other_size.returncode != 0
    assert "ran 2 leaf images per condition, not 3" in other_size.stderr
