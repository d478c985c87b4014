"""Load test: 8 concurrent clients x 50 requests (leaf and cactus mixed) against one app process.
Reports errors, p50/p95 latency and the app's resident memory after warm-up (the same clients,
10 requests each: every batch size the queue forms has been traced) and after the run.
Targets: zero errors; memory after the run within 50 MB of after warm-up.

    python benchmarks/load_test.py [--clients 8] [--requests 50] [--rounds 1] [--url URL --pid PID]
    python benchmarks/load_test.py --overflow        # the queue's limit: refusals say "try again"

--rounds N repeats the run N times against the same app, a row each, memory measured after each against the same
warm-up: whether growth levels off or keeps climbing (the target then holds for all of them).
With --url and --pid it loads an app that is already running (the tests' one) instead of starting its own.
--overflow starts an app whose queue holds OVERFLOW_QUEUE requests and sends OVERFLOW_CALLS heavy requests
(/explain_leaf, one slot) at once. Targets: some answered, the rest refused at once with Gradio's "Queue is
full ... try again", nothing else.
"""

from __future__ import annotations

import argparse
import sys

from common import ROOT, concurrent_requests, example_calls, report, resident_mb, start_server

MEMORY_GROWTH_LIMIT_MB = 50
OVERFLOW_QUEUE = 2
OVERFLOW_CALLS = 12


def overflow() -> int:
    """OVERFLOW_CALLS simultaneous Grad-CAM requests against a queue of OVERFLOW_QUEUE places."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    image = next(path for path, endpoint, _ in example_calls() if endpoint == "/classify_leaf")
    app, url, _ = start_server(ROOT / "app.py", env={"GREENLENS_QUEUE_MAX_SIZE": str(OVERFLOW_QUEUE)})
    try:
        clients = [Client(url, verbose=False) for _ in range(OVERFLOW_CALLS)]

        def call(client):
            started = time.perf_counter()
            try:
                client.predict(handle_file(str(image)), api_name="/explain_leaf")
                return "answered", time.perf_counter() - started, ""
            except Exception as error:
                refused = "queue is full" in str(error).lower() and "try again" in str(error).lower()
                return "refused" if refused else "error", time.perf_counter() - started, f"{type(error).__name__}: {error}"

        with ThreadPoolExecutor(OVERFLOW_CALLS) as pool:
            outcomes = list(pool.map(call, clients))
    finally:
        app.terminate()
    counts = {kind: sum(1 for outcome in outcomes if outcome[0] == kind) for kind in ("answered", "refused", "error")}
    refused_s = [seconds for kind, seconds, _ in outcomes if kind == "refused"]
    row = {"calls": OVERFLOW_CALLS, "queue_max_size": OVERFLOW_QUEUE, **counts,
           "slowest_refusal_s": round(max(refused_s), 3) if refused_s else None}
    messages = sorted({message for kind, _, message in outcomes if kind != "answered"})
    passed = counts["answered"] > 0 and counts["refused"] > 0 and counts["error"] == 0
    report("queue_overflow", [row], {"passed": passed, "messages": messages})
    print(f"{'PASSED' if passed else 'FAILED'}: {counts}; callers saw: {messages}")
    return 0 if passed else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--rounds", type=int, default=1, help="runs against the same app, memory after each")
    parser.add_argument("--url", help="a running app to load (default: start one)")
    parser.add_argument("--pid", type=int, help="the running app's process id, for its memory")
    parser.add_argument("--overflow", action="store_true", help="measure the queue's limit instead (its own app)")
    args = parser.parse_args()
    if args.overflow:
        return overflow()
    calls = example_calls()
    app, url, _ = (None, args.url, 0) if args.url else start_server(ROOT / "app.py")
    pid = args.pid if args.url else app.pid
    rows, errors = [], []
    try:
        warm_up = concurrent_requests(url, args.clients, 10, calls)
        after_warm_up = resident_mb(pid)
        errors += warm_up["first_errors"]
        for _ in range(args.rounds):
            result = concurrent_requests(url, args.clients, args.requests, calls)
            after_run = resident_mb(pid)
            errors += result["first_errors"]
            rows.append({**{k: v for k, v in result.items() if k != "first_errors"}, "warm_up_errors": warm_up["errors"],
                         "rss_after_warm_up_mb": after_warm_up, "rss_after_run_mb": after_run,
                         "rss_growth_mb": after_run - after_warm_up})
    finally:
        if app is not None:
            app.terminate()
    failed = sum(row["errors"] for row in rows) + warm_up["errors"]
    growth = max(row["rss_growth_mb"] for row in rows)
    passed = failed == 0 and growth <= MEMORY_GROWTH_LIMIT_MB
    report("load_test", rows, {"passed": passed, "first_errors": errors[:5], "memory_growth_limit_mb": MEMORY_GROWTH_LIMIT_MB})
    for error in errors[:5]:
        print("error:", error)
    requests = sum(row["requests"] for row in rows)
    print(f"{'PASSED' if passed else 'FAILED'}: {failed} errors in {requests} requests, p95 {rows[0]['p95_ms']:.0f} ms "
          f"(first run), memory up to {growth:+.0f} MB (limit {MEMORY_GROWTH_LIMIT_MB} MB)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
