"""Hostile and unlucky uploads against one app process, with its resident memory sampled every 20 ms:
a zip bomb (1 MB inflating to 1 GB of "images"), a zip of 100,000 entries, a 30,000 x 30,000 PNG,
eight 8,000 x 8,000 JPEGs at once, and eight requests at once of which one is a truncated JPEG.
Each case must get its expected answer or refusal; the app's peak memory must stay within
PEAK_GROWTH_MB of what it held before; the app must serve normally afterwards.

    python benchmarks/hostile_inputs.py [--url URL --pid PID]

Without --url it starts its own app. Exits 1 when a case or the memory bound fails.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import ROOT, report, resident_mb, start_server
from PIL import Image

# What the app may add to its memory while serving the corpus. Before the caps, the zip bomb alone
# would try to hold 1 GB and eight 8,000 x 8,000 photos ~6 GB of float32 (measured: 17.8 GB in all).
PEAK_GROWTH_MB = 250


class PeakMemory:
    """Samples a process's resident memory every 20 ms while in the block."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.running = pid, 0.0, True

    def __enter__(self):
        self.before = self.peak = resident_mb(self.pid)
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, resident_mb(self.pid))
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def build_corpus(folder: Path) -> dict[str, Path]:
    bomb = folder / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(4):
            with archive.open(f"zeros{index}.jpg", "w", force_zip64=True) as entry:
                for _ in range(256):
                    entry.write(bytes(2**20))
    many = folder / "many.zip"
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as archive:
        for index in range(100_000):
            archive.writestr(f"tiles/{index}.jpg", b"x")
    huge_png = folder / "huge.png"
    Image.new("1", (30_000, 30_000)).save(huge_png, optimize=True)
    photo = folder / "photo.jpg"  # 8,000 x 8,000 in a few megabytes: within the upload limit
    small = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    Image.fromarray(small).resize((8000, 8000), Image.Resampling.BILINEAR).save(photo, quality=80)
    good = next(iter(sorted((ROOT / "examples" / "leaf").glob("*"))), None)
    if good is None:
        raise SystemExit("example images missing: run `make examples` first")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {"bomb": bomb, "many": many, "huge_png": huge_png, "photo": photo, "good": good, "truncated": truncated}


def outcome(call) -> str:
    try:
        return f"answered: {call()}"
    except Exception as error:  # noqa: BLE001 - a refusal is an outcome
        return f"refused: {error}"


def run_cases(url: str, corpus: dict[str, Path]) -> list[dict]:
    """(case, expected pattern, outcome): each case once, in order."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    clients = [Client(url, verbose=False) for _ in range(8)]
    leaf_label = client.predict(handle_file(str(corpus["good"])), api_name="/classify_leaf")["label"]

    def batch(paths, endpoint):
        table, _, skipped = client.predict([handle_file(str(p)) for p in paths], api_name=endpoint)
        return f"{len(table['data'])} classified; skipped: " + "; ".join(f"{s['file']}: {s['error']}" for s in skipped)

    def concurrently(paths):
        with ThreadPoolExecutor(len(paths)) as pool:
            return " | ".join(pool.map(lambda pair: outcome(lambda: pair[0].predict(
                handle_file(str(pair[1])), api_name="/classify_leaf")["label"]), zip(clients, paths)))

    mixed = [corpus["good"]] * 3 + [corpus["truncated"]] + [corpus["good"]] * 4
    cases = [
        ("zip bomb + a leaf", r"answered: 1 classified; skipped: (zeros\d.jpg: zeros\d.jpg expands to more than 32 MB[^;]*(; )?){4}$",
         lambda: batch([corpus["bomb"], corpus["good"]], "/batch_leaf")),
        ("zip of 100,000 entries", r"refused: .*holds more than 10,000 images", lambda: batch([corpus["many"]], "/batch_cactus")),
        ("30,000 x 30,000 PNG", r"refused: .*over the limit of", lambda: client.predict(
            handle_file(str(corpus["huge_png"])), api_name="/classify_leaf")["label"]),
        # Both concurrent cases are answered as a whole, with one outcome per request inside.
        ("8 x 8,000 x 8,000 JPEG at once", r"^answered: (answered: [^|]+){1}( \| answered: [^|]+){7}$",
         lambda: concurrently([corpus["photo"]] * 8)),
        ("8 at once, one truncated", "^answered: " + re.escape(" | ".join([f"answered: {leaf_label}"] * 3))
         + r" \| refused: [^|]*damaged or truncated[^|]* \| " + re.escape(" | ".join([f"answered: {leaf_label}"] * 4)) + "$",
         lambda: concurrently(mixed)),
        ("a leaf afterwards", f"^answered: {re.escape(leaf_label)}$", lambda: client.predict(
            handle_file(str(corpus["good"])), api_name="/classify_leaf")["label"]),
    ]
    return [{"case": name, "expected": pattern, "outcome": outcome(call)} for name, pattern, call in cases]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="a running app (default: start one)")
    parser.add_argument("--pid", type=int, help="the running app's process id, for its memory")
    args = parser.parse_args()
    corpus = build_corpus(Path(tempfile.mkdtemp(prefix="hostile-")))
    app, url, _ = (None, args.url, 0) if args.url else start_server(ROOT / "app.py")
    pid = args.pid if args.url else app.pid
    try:
        with PeakMemory(pid) as memory:
            results = run_cases(url, corpus)
    finally:
        if app is not None:
            app.terminate()
    rows = []
    for result in results:
        passed = re.search(result["expected"], result["outcome"]) is not None
        rows.append({"case": result["case"], "passed": passed, "outcome": result["outcome"][:160]})
    growth = memory.peak - memory.before
    passed = all(row["passed"] for row in rows) and growth < PEAK_GROWTH_MB
    report("hostile_inputs", rows, {"passed": passed, "rss_before_mb": memory.before, "rss_peak_mb": memory.peak,
                                    "rss_growth_mb": growth, "peak_growth_limit_mb": PEAK_GROWTH_MB,
                                    "outcomes": [r["outcome"] for r in results]})
    print(f"{'PASSED' if passed else 'FAILED'}: app memory {memory.before:.0f} MB before, peak {memory.peak:.0f} MB "
          f"(+{growth:.0f} MB, limit +{PEAK_GROWTH_MB} MB)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
