"""Hostile and unlucky uploads against one app process, with its resident memory sampled every 20 ms:
a zip bomb (1 MB inflating to 1 GB of "images"), a zip of 100,000 entries, a 30,000 x 30,000 PNG, an EPS
named .jpg, eight 8,000 x 8,000 JPEGs at once, and eight requests at once of which one is a truncated JPEG.
Each case must get its expected answer or refusal; the app's peak memory must stay within
PEAK_GROWTH_MB of what it held before; the app must serve normally afterwards.

Survey uploads that attack the server (issue 22): GDAL VRTs named .tif that read a local file, read a
text file's raw bytes as pixels or fetch a loopback URL, a WMS description of a loopback server, a
GeoTIFF whose metadata names an overview file on a loopback server, and a sparse 200,000 x 200,000
GeoTIFF of 1 MB. Each must be refused with its own message within SURVEY_REFUSAL_S, the loopback
server must receive no request, /classify_leaf answered meanwhile must stay within
CLASSIFY_SLOWDOWN_LIMIT x its time before, and an ordinary GeoTIFF, PNG and JPEG must still survey.

    python benchmarks/hostile_inputs.py [--url URL --pid PID]

Without --url it starts its own app. Exits 1 when a case or the memory bound fails.
"""

from __future__ import annotations

import argparse
import http.server
import re
import shutil
import statistics
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
# Each hostile survey upload is refused within this many seconds (before the fix: the local file was
# read and served, the URL fetched, and the sparse GeoTIFF still surveying after 90 s).
SURVEY_REFUSAL_S = 10.0
# /classify_leaf's median time while the hostile surveys are refused, over its median before.
CLASSIFY_SLOWDOWN_LIMIT = 2.0
ROUNDS = 3


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
    postscript = folder / "leaf.jpg"  # an EPS named .jpg: Pillow would hand it to Ghostscript
    Image.open(good).convert("RGB").save(postscript, format="EPS")
    return {"bomb": bomb, "many": many, "huge_png": huge_png, "photo": photo, "good": good, "truncated": truncated,
            "postscript": postscript}


class RecordingServer:
    """An HTTP server on loopback that answers 404 and records every request it gets."""

    def __init__(self):
        requests = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.end_headers()

            do_HEAD = do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def vrt(width: int, height: int, bands: str) -> str:
    return f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{bands}</VRTDataset>'


def simple_bands(source: str) -> str:
    return "".join(f'<VRTRasterBand dataType="Byte" band="{band}"><SimpleSource><SourceFilename relativeToVRT="0">'
                   f"{source}</SourceFilename><SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>"
                   for band in (1, 2, 3))


def build_survey_corpus(folder: Path, url: str) -> dict[str, Path]:
    """The hostile survey uploads, each named like a file the survey tab accepts, and three good ones."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    def text(name: str, content: str) -> Path:
        (folder / name).write_text(content)
        return folder / name

    readme = (ROOT / "README.md").resolve()
    raw = "".join(f'<VRTRasterBand dataType="Byte" band="{band}" subClass="VRTRawRasterBand"><SourceFilename '
                  f'relativetoVRT="0">{readme}</SourceFilename><ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset>'
                  "<LineOffset>64</LineOffset></VRTRasterBand>" for band in (1, 2, 3))
    corpus = {
        "vrt_local": text("anything.tif", vrt(640, 480, simple_bands(str((ROOT / "docs" / "screenshot.png").resolve())))),
        "vrt_raw": text("raw.tif", vrt(64, 64, raw)),
        "vrt_url": text("remote.tif", vrt(256, 256, simple_bands(f"/vsicurl/{url}/vrt-source.png"))),
        "wms_url": text("map.png", f"<GDAL_WMS><Service name=\"WMS\"><ServerUrl>{url}/wms?</ServerUrl><Layers>x</Layers>"
                        "</Service><DataWindow><UpperLeftX>-180</UpperLeftX><UpperLeftY>90</UpperLeftY><LowerRightX>180"
                        "</LowerRightX><LowerRightY>-90</LowerRightY><SizeX>1024</SizeX><SizeY>512</SizeY></DataWindow>"
                        "</GDAL_WMS>"),
    }
    profile = dict(driver="GTiff", count=3, dtype="uint8", crs="EPSG:32614",
                   transform=Affine(0.05, 0, 500_000.0, 0, -0.05, 2_000_000.0))
    corpus["overview_url"] = folder / "overview.tif"
    with rasterio.open(corpus["overview_url"], "w", width=256, height=256, **profile) as out:
        out.write(np.full((3, 256, 256), 90, np.uint8))
        out.update_tags(ns="OVERVIEWS", OVERVIEW_FILE=f"/vsicurl/{url}/overview.tif")
    corpus["sparse_bomb"] = folder / "sparse.tif"
    with rasterio.open(corpus["sparse_bomb"], "w", width=200_000, height=200_000, tiled=True, blockxsize=512,
                       blockysize=512, sparse_ok=True, compress="deflate", **profile) as out:
        out.write(np.full((3, 512, 512), 90, np.uint8), window=Window(0, 0, 512, 512))
    tiles = [np.asarray(Image.open(path).convert("RGB")) for path in sorted((ROOT / "examples" / "cactus").glob("*.jpg"))]
    if not tiles:
        raise SystemExit("example images missing: run `make examples` first")
    mosaic = np.concatenate([np.concatenate([tiles[(r * 8 + c) % len(tiles)] for c in range(8)], axis=1) for r in range(8)])
    corpus["good_geotiff"] = folder / "good.tif"
    with rasterio.open(corpus["good_geotiff"], "w", width=256, height=256, **profile) as out:
        out.write(mosaic.transpose(2, 0, 1))
    for kind, suffix in (("good_png", "png"), ("good_jpeg", "jpg")):
        corpus[kind] = folder / f"good.{suffix}"
        Image.fromarray(mosaic).save(corpus[kind], quality=95)
    return corpus


def run_survey_cases(url: str, corpus: dict[str, Path]) -> tuple[list[dict], dict]:
    """(cases, /classify_leaf timing): every hostile survey upload once, in order, while another client
    calls /classify_leaf; then the good ones."""
    from gradio_client import Client, handle_file

    client, timer = Client(url, verbose=False), Client(url, verbose=False)
    leaf = handle_file(str(next(iter(sorted((ROOT / "examples" / "leaf").glob("*"))))))

    def classify_time() -> float:
        started = time.perf_counter()
        timer.predict(leaf, api_name="/classify_leaf")
        return time.perf_counter() - started

    before = [classify_time() for _ in range(7)]

    def survey(kind: str):
        started = time.perf_counter()
        result = outcome(lambda: client.predict(handle_file(str(corpus[kind])), api_name="/survey")[1])
        return result, time.perf_counter() - started

    # One pattern for the whole outcome: the rounds' outcomes are joined, so they must all be the same.
    not_allowed = r"^refused: [^/]*is not a GeoTIFF, PNG or JPEG[^/]*$"
    hostile = [
        ("VRT named .tif reading a local file", "vrt_local", not_allowed),
        ("VRT raw band over a text file", "vrt_raw", not_allowed),
        ("VRT fetching a loopback URL", "vrt_url", not_allowed),
        ("WMS description of a loopback server", "wms_url", not_allowed),
        ("GeoTIFF naming an overview file by URL", "overview_url", r"^refused: [^/]*names an overview file elsewhere[^/]*$"),
        ("sparse 200,000 x 200,000 GeoTIFF", "sparse_bomb", r"^refused: sparse.tif declares 200,000 x 200,000 pixels, "
         r"over this server's limit of [\d,]+ pixels[^/]*$"),
    ]
    during, cases, done = [], [], threading.Event()

    def keep_classifying():
        while not done.is_set():
            during.append(classify_time())

    thread = threading.Thread(target=keep_classifying)
    thread.start()
    try:
        # Three rounds, so that /classify_leaf's median while they are served rests on enough calls.
        rounds = [[survey(kind) for _, kind, _ in hostile] for _ in range(ROUNDS)]
    finally:
        done.set()
        thread.join()
    for index, (name, _, pattern) in enumerate(hostile):
        outcomes = {run[index][0] for run in rounds}
        cases.append({"case": name, "expected": pattern, "outcome": " / ".join(sorted(outcomes)),
                      "seconds": max(run[index][1] for run in rounds), "within_s": SURVEY_REFUSAL_S})
    for name, kind in (("ordinary GeoTIFF", "good_geotiff"), ("ordinary PNG", "good_png"), ("ordinary JPEG", "good_jpeg")):
        result, seconds = survey(kind)
        cases.append({"case": f"{name} surveys", "expected": r"^answered: \{'tiles': 64,", "outcome": result,
                      "seconds": seconds, "within_s": None})
    timing = {"classify_before_ms": statistics.median(before) * 1000, "classify_during_ms": statistics.median(during) * 1000,
              "classify_during_calls": len(during)}
    timing["classify_slowdown"] = timing["classify_during_ms"] / timing["classify_before_ms"]
    return cases, timing


def warm_up(url: str, geotiff: Path) -> None:
    """One ordinary survey before memory is measured: a process's first survey loads GDAL and sizes the
    tile model's buffers once (about 100 MB), which no upload's content changes."""
    from gradio_client import Client, handle_file

    Client(url, verbose=False).predict(handle_file(str(geotiff)), api_name="/survey")


def outcome(call) -> str:
    try:
        return f"answered: {call()}"
    except Exception as error:
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
        ("zip bomb + a leaf",
         r"answered: 1 classified; skipped: (zeros\d.jpg: zeros\d.jpg expands to more than 32 MB[^;]*(; )?){4}$",
         lambda: batch([corpus["bomb"], corpus["good"]], "/batch_leaf")),
        ("zip of 100,000 entries", r"refused: .*holds more than 10,000 images", lambda: batch([corpus["many"]], "/batch_cactus")),
        ("30,000 x 30,000 PNG", r"refused: .*over the limit of", lambda: client.predict(
            handle_file(str(corpus["huge_png"])), api_name="/classify_leaf")["label"]),
        ("an EPS named .jpg", r"refused: .*not an image this app can read", lambda: client.predict(
            handle_file(str(corpus["postscript"])), api_name="/classify_leaf")["label"]),
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
    folder = Path(tempfile.mkdtemp(prefix="hostile-"))
    corpus = build_corpus(folder)
    recorder = RecordingServer()
    survey_corpus = build_survey_corpus(folder, recorder.url)
    app, url, _ = (None, args.url, 0) if args.url else start_server(ROOT / "app.py")
    pid = args.pid if args.url else app.pid
    try:
        warm_up(url, survey_corpus["good_geotiff"])
        with PeakMemory(pid) as memory:
            results = run_cases(url, corpus)
            survey_results, timing = run_survey_cases(url, survey_corpus)
    finally:
        recorder.close()
        if app is not None:
            app.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for result in results + survey_results:
        passed = re.search(result["expected"], result["outcome"]) is not None
        if result.get("within_s") is not None:
            passed = passed and result["seconds"] < result["within_s"]
        rows.append({"case": result["case"], "passed": passed, "outcome": result["outcome"][:160],
                     "seconds": round(result["seconds"], 2) if "seconds" in result else ""})
    growth = memory.peak - memory.before
    passed = (all(row["passed"] for row in rows) and growth < PEAK_GROWTH_MB and not recorder.requests
              and timing["classify_slowdown"] <= CLASSIFY_SLOWDOWN_LIMIT)
    report("hostile_inputs", rows, {"passed": passed, "rss_before_mb": memory.before, "rss_peak_mb": memory.peak,
                                    "rss_growth_mb": growth, "peak_growth_limit_mb": PEAK_GROWTH_MB,
                                    "loopback_requests": recorder.requests, **timing,
                                    "classify_slowdown_limit": CLASSIFY_SLOWDOWN_LIMIT,
                                    "outcomes": [r["outcome"] for r in results + survey_results]})
    print(f"Loopback server: {len(recorder.requests)} request(s) received {recorder.requests[:5]}")
    print(f"/classify_leaf: {timing['classify_before_ms']:.0f} ms before, {timing['classify_during_ms']:.0f} ms while "
          f"the hostile surveys were refused (x{timing['classify_slowdown']:.2f}, limit x{CLASSIFY_SLOWDOWN_LIMIT:g})")
    print(f"{'PASSED' if passed else 'FAILED'}: app memory {memory.before:.0f} MB before, peak {memory.peak:.0f} MB "
          f"(+{growth:.0f} MB, limit +{PEAK_GROWTH_MB} MB)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
