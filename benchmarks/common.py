"""Shared by the benchmark scripts: timing, tables, JSON results."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The datasets in their Kaggle layouts (../shared/data beside the checkout unless DATA_DIR says otherwise).
DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# BENCHMARK_RESULTS: write the JSON elsewhere (the tests do, to keep the committed numbers).
RESULTS = Path(os.environ.get("BENCHMARK_RESULTS") or Path(__file__).resolve().parent / "results")


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
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(name: str, rows: list[dict], extra: dict | None = None) -> None:
    """Prints rows as a table and writes them with the machine's description to results/NAME.json."""
    columns = list(rows[0])
    widths = [max(len(str(c)), *(len(_fmt(r[c])) for r in rows)) for c in columns]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(_fmt(row[c]).ljust(w) for c, w in zip(columns, widths)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), "rows": rows, **(extra or {})}, indent=2) + "\n")
    print(f"\nwrote {RESULTS / f'{name}.json'}")


def machine() -> dict:
    """What ran a benchmark, enough to tell its numbers from another machine's: these machines' speed varies
    between sessions, and LiteRT's int8 kernels gain only where the CPU has AVX-512."""
    described = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "python": platform.python_version(), "date": datetime.date.today().isoformat()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text()
        if model := re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE):
            described["cpu"] = model.group(1).strip()
        if flags := re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE):
            described["avx512"] = "avx512f" in flags.group(1).split()
    return described


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
                raise RuntimeError(f"{script} exited with {process.returncode}") from None
            time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"{script} did not answer within {timeout} s")


def example_calls() -> list[tuple[Path, str, str]]:
    """(image, endpoint, expected label) for every example image of both tasks."""
    from greenlens.core.examples import example_files

    calls = [(path, f"/classify_{task}", expected) for task in ("leaf", "cactus") for path, expected in example_files(task)]
    if not calls:
        raise SystemExit("example images missing: run `make examples` first")
    return calls


def concurrent_requests(url: str, clients: int, requests_per_client: int, calls) -> dict:
    """`clients` threads, each with its own gradio_client, send `requests_per_client` requests,
    cycling through `calls` (image, endpoint, expected label). A request errs when it raises or
    answers a label other than the expected one."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    def one_client(index: int):
        client = Client(url, verbose=False)
        latencies, errors = [], []
        for n in range(requests_per_client):
            path, endpoint, expected = calls[(index + n * clients) % len(calls)]
            started = time.perf_counter()
            try:
                label = client.predict(handle_file(str(path)), api_name=endpoint)["label"]
                if label != expected:
                    errors.append(f"{path.name}: {label!r}, expected {expected!r}")
            except Exception as error:
                errors.append(f"{path.name}: {error}")
            latencies.append(time.perf_counter() - started)
        return latencies, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one_client, range(clients)))
    wall = time.perf_counter() - started
    latencies = [t for times, _ in results for t in times]
    errors = [e for _, errs in results for e in errs]
    return {
        "clients": clients, "requests": len(latencies), "errors": len(errors), "requests_per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
        "first_errors": errors[:5],
    }


def resident_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
