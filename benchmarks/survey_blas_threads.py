"""What one BLAS thread during a survey's classification is worth: the same survey (`predict.py --survey`, each a
fresh process) with NumPy's matrix products held to one thread, as surveys run them
(greenlens.survey.grid.classify_chunks), and with that limit taken out (threadpoolctl's `threadpool_limits` made a
no-op in the child process, so OpenBLAS uses every core as NumPy would by default). The two run in turn, round after
round, because these machines' speed drifts within a session: compare the means of one run only.

    python benchmarks/survey_blas_threads.py [--size 6000] [--rounds 3] [--model models/cactus] [--candidate]

The raster is survey_speed.py's orthomosaic of real tiles at --size (kept in $TMPDIR/greenlens-benchmarks).
"""

from __future__ import annotations

import os
from pathlib import Path

from common import report
from survey_speed import in_turn, in_turn_arguments, survey_in_child, timing_columns

# The child: predict.py's main, with the survey's BLAS limit left as it is ("one") or made a no-op ("all", from
# the environment). It notes the BLAS threads the tile model was called with, so each row says what it measured.
CHILD = """
import contextlib, os, resource, runpy, sys, time
import threadpoolctl
from greenlens.survey.tile_model import TileClassifier
if os.environ["GREENLENS_BENCHMARK_BLAS"] == "all":
    threadpoolctl.threadpool_limits = lambda *args, **kwargs: contextlib.nullcontext()
seen, classify = set(), TileClassifier.__call__
def noted(self, tiles):
    seen.update(pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas")
    return classify(self, tiles)
TileClassifier.__call__ = noted
started = time.perf_counter()
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(time.perf_counter() - started, usage.ru_utime + usage.ru_stime, max(seen, default=0), file=sys.stderr)
"""


# Variables that would set BLAS's threads before NumPy starts (Dask sets them in a process that starts a cluster):
# the child runs without them, so that "NumPy's default" is NumPy's default.
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def child_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in BLAS_VARIABLES}


def survey(mode: str, model: str, raster: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of all its threads, BLAS threads while classifying) of one survey in a fresh
    process."""
    wall, cpu, threads = survey_in_child(CHILD, model, raster,
                                         env={**child_environment(), "GREENLENS_BENCHMARK_BLAS": mode})
    return float(wall), float(cpu), int(threads)


def main() -> None:
    args, model, name, raster = in_turn_arguments(__doc__, "survey_blas_threads")
    labels = {"one": "one BLAS thread while classifying (as surveys run)", "all": "NumPy's default BLAS threads"}
    runs = in_turn(labels, lambda mode: survey(mode, model, raster), args.rounds)
    rows = [{"survey": labels[mode], "BLAS threads": max(threads for _, _, threads in values), **timing_columns(values)}
            for mode, values in runs.items()]
    speedup = rows[1]["mean seconds"] / rows[0]["mean seconds"]
    report(args.results, rows, {"model": name, "raster": f"{args.size:,} x {args.size:,} (survey_speed.py's)",
                                "rounds": args.rounds, "speedup_of_one_thread": speedup})
    print(f"one BLAS thread: {speedup:.2f}x the speed of NumPy's default")


if __name__ == "__main__":
    main()
