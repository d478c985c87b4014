"""What a cluster worker's malloc setting is worth: the same survey (`predict.py --survey`, each a fresh process)
in one process, on `--scheduler local:2` as surveys run (each worker sets glibc's malloc back to reusing freed
memory on its first chunk, greenlens.survey.cluster.reuse_freed_memory), and on `local:2` with that made a no-op
(a Dask worker preload), so that the workers keep the MALLOC_TRIM_THRESHOLD_=65536 Dask's nanny starts them with.
The three run in turn, round after round, because these machines' speed drifts within a session: compare the
means of one run only.

    python benchmarks/survey_worker_memory.py [--size 6000] [--rounds 3] [--model models/cactus] [--candidate]

The raster is survey_speed.py's orthomosaic of real tiles at --size (kept in $TMPDIR/greenlens-benchmarks). Each row
says how many workers kept Dask's setting, so it says what it measured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from common import report
from survey_speed import CACHE, in_turn, in_turn_arguments, survey_in_child, timing_columns

# The child: predict.py's main, then the wall seconds, the CPU seconds of it and its workers (children of the
# process that starts a LocalCluster, waited for when it closes) and the workers' system seconds.
CHILD = """
import resource, runpy, sys, time
started = time.perf_counter()
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(time.perf_counter() - started, own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime,
          workers.ru_stime, file=sys.stderr)
"""

# Loaded by each worker before it starts: the reset becomes a no-op that leaves a file named after the worker's
# process in the folder given, so the row can count the workers it held for.
PRELOAD = """
import os
from pathlib import Path
import greenlens.survey.cluster
def kept_dask_setting():
    Path(os.environ["GREENLENS_BENCHMARK_KEPT"], str(os.getpid())).touch()
    return False
greenlens.survey.cluster.reuse_freed_memory = kept_dask_setting
"""

MODES = {"one": ("one process", ()),
         "reset": ("local:2, workers reuse freed memory (as surveys run)", ("--scheduler", "local:2")),
         "dask": ("local:2, workers keep Dask's MALLOC_TRIM_THRESHOLD_=65536", ("--scheduler", "local:2"))}


def survey(mode: str, model: str, raster: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds of it and its workers, the workers' system seconds, workers that kept Dask's malloc
    setting) of one survey in a fresh process."""
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="workers-", dir=CACHE))
    kept = work / "kept"
    kept.mkdir()
    # Without a malloc setting of the calling shell's (a process that started a Dask cluster has Dask's): each row
    # gets only what its mode gives it.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    if mode == "dask":
        (work / "preload.py").write_text(PRELOAD)
        environment |= {"DASK_DISTRIBUTED__WORKER__PRELOAD": repr([str(work / "preload.py")]),
                        "GREENLENS_BENCHMARK_KEPT": str(kept)}
    wall, cpu, system = survey_in_child(CHILD, model, raster, *MODES[mode][1], env=environment)
    return float(wall), float(cpu), float(system), len(list(kept.iterdir()))


def main() -> None:
    args, model, name, raster = in_turn_arguments(__doc__, "survey_worker_memory")
    runs = in_turn({mode: label for mode, (label, _) in MODES.items()}, lambda mode: survey(mode, model, raster),
                   args.rounds)
    rows = [{"survey": MODES[mode][0], "workers that kept Dask's setting": max(run[3] for run in values),
             **timing_columns(values),
             "workers' system seconds": float(np.mean([run[2] for run in values])) if mode != "one" else None}
            for mode, values in runs.items()]
    one, reset, dask = (row["mean seconds"] for row in rows)
    ratios = {"local2_over_one_process": one / reset, "local2_over_one_process_with_dask_setting": one / dask,
              "speedup_of_reuse": dask / reset}
    report(args.results, rows, {"model": name, "raster": f"{args.size:,} x {args.size:,} (survey_speed.py's)",
                                "rounds": args.rounds, "ratios": ratios})
    print(f"local:2 as surveys run: {ratios['local2_over_one_process']:.2f}x one process's speed; with Dask's "
          f"setting kept: {ratios['local2_over_one_process_with_dask_setting']:.2f}x")


if __name__ == "__main__":
    main()
