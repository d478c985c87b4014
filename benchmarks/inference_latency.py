"""Latency of one classification: bare predict_on_batch vs a gradio_client round trip to the app vs
the same round trip to a do-nothing Gradio app (Gradio's floor), p50/p95; and the app's cold start.
Target: (app - do-nothing app) <= 1.5 x bare predict_on_batch.

    python benchmarks/inference_latency.py [--requests 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import ROOT, percentile, report, start_server, timed
from gradio_client import Client, handle_file
from threadpoolctl import threadpool_limits

from greenlens.core.examples import example_files
from greenlens.core.images import decode_image
from greenlens.core.inference import Classifier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    examples = {task: example_files(task) for task in ("leaf", "cactus")}
    if not all(examples.values()):
        raise SystemExit("example images missing: run `make examples` first")

    rows, targets = [], {}
    noop, noop_url, _ = start_server(ROOT / "benchmarks" / "noop_app.py")
    started = time.perf_counter()
    app, app_url, _ = start_server(ROOT / "app.py")
    try:
        app_client, noop_client = Client(app_url, verbose=False), Client(noop_url, verbose=False)
        first = examples["leaf"][0][0]
        app_client.predict(handle_file(str(first)), api_name="/classify_leaf")
        rows.append({"what": "app cold start (process start to first answer)",
                     "p50_ms": (time.perf_counter() - started) * 1000, "p95_ms": float("nan")})
        for task in ("leaf", "cactus"):
            path = examples[task][0][0]
            classifier = Classifier.load(str(ROOT / "models" / task))
            image = decode_image(path)[None].astype(np.float32)
            classifier.model.predict_on_batch(image)
            bare = timed(lambda: classifier.model.predict_on_batch(image), args.requests)
            with threadpool_limits(limits=1, user_api="blas"):  # as the app runs it (OPENBLAS_NUM_THREADS=1)
                guarded = timed(lambda: classifier.classify([image[0]]), args.requests)
            via_app = timed(lambda: app_client.predict(handle_file(str(path)), api_name=f"/classify_{task}"), args.requests)
            via_noop = timed(lambda: noop_client.predict(handle_file(str(path)), api_name="/classify"), args.requests)
            for what, times in (("bare predict_on_batch", bare), ("Classifier.classify (with guard)", guarded),
                                ("gradio_client -> app", via_app), ("gradio_client -> do-nothing app", via_noop)):
                rows.append({"what": f"{task}: {what}", "p50_ms": percentile(times, 50) * 1000,
                             "p95_ms": percentile(times, 95) * 1000})
            overhead = percentile(via_app, 50) - percentile(via_noop, 50)
            targets[task] = {"app_minus_noop_over_bare_p50": overhead / percentile(bare, 50), "target": 1.5}
    finally:
        app.terminate()
        noop.terminate()
    report("inference_latency", rows, {"targets": targets, "requests": args.requests})
    for task, result in targets.items():
        print(f"{task}: (app - do-nothing app) / bare predict = {result['app_minus_noop_over_bare_p50']:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
