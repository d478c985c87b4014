"""Requests/s of the app at 1, 4 and 8 concurrent clients, with the queue's batching on and off
(GREENLENS_MAX_BATCH_SIZE=16 vs 1); requests alternate between the leaf and cactus endpoints.
The do-nothing app (benchmarks/noop_app.py) at the same concurrency is Gradio's own ceiling.

    python benchmarks/throughput.py [--requests 24]   (per client)
"""

from __future__ import annotations

import argparse

from common import ROOT, concurrent_requests, example_calls, report, start_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=24, help="requests per client")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    calls = example_calls()
    noop_calls = [(path, "/classify", "a") for path, _, _ in calls]
    rows = []
    for app_name, script, batching, max_batch_size, app_calls in (
        ("app", "app.py", "on", "16", calls),
        ("app", "app.py", "off", "1", calls),
        ("do-nothing app", "benchmarks/noop_app.py", "on", "16", noop_calls),
    ):
        app, url, _ = start_server(ROOT / script, env={"GREENLENS_MAX_BATCH_SIZE": max_batch_size})
        try:
            concurrent_requests(url, max(args.clients), 2, app_calls)  # warm-up: every batch size traced
            for clients in args.clients:
                result = concurrent_requests(url, clients, args.requests, app_calls)
                rows.append({"app": app_name, "batching": batching,
                             **{k: v for k, v in result.items() if k != "first_errors"}})
        finally:
            app.terminate()
    report("throughput", rows, {"requests_per_client": args.requests})
    for clients in args.clients:
        on, off, noop = (r["requests_per_s"] for r in rows if r["clients"] == clients)
        print(f"{clients} client(s): batching on {on:.1f} req/s, off {off:.1f} req/s ({on / off:.2f}x); "
              f"do-nothing app {noop:.1f} req/s")


if __name__ == "__main__":
    main()
