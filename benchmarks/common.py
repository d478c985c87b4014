"""Shared by the benchmark scripts: timing, tables, JSON results."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
RESULTS = Path(__file__).resolve().parent / "results"


def timed(function, repeat: int) -> list[float]:
    """Wall-clock seconds of each of `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report(name: str, rows: list[dict], extra: dict | None = None) -> None:
    """Prints rows as a table and writes them with the machine's description to results/NAME.json."""
    columns = list(rows[0])
    widths = [max(len(str(c)), *(len(_fmt(r[c])) for r in rows)) for c in columns]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(_fmt(row[c]).ljust(w) for c, w in zip(columns, widths)))
    RESULTS.mkdir(exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()}
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine, "rows": rows, **(extra or {})}, indent=2) + "\n")
    print(f"\nwrote {RESULTS / f'{name}.json'}")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def start_server(script: Path, env: dict | None = None, timeout: float = 240):
    """Starts a Gradio app script on a free port; returns (process, url, seconds until it answered)."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environment = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                   "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - started < timeout:
        try:
            urllib.request.urlopen(url + "config", timeout=2)
            return process, url, time.perf_counter() - started
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{script} exited with {process.returncode}")
            time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"{script} did not answer within {timeout} s")
