"""Surveys spread over a Dask distributed cluster: the chunks of every raster go to the workers, each
worker loads the model once and reads its own windows from the raster's path (no pixels travel from
the client), and the client puts the results back in chunk order. A chunk is classified exactly as
in a single process (greenlens.survey.grid.classify_chunk), so the numbers are the same.

`scheduler` is "local:N" (a local cluster of N worker processes) or the address of a running
scheduler (`dask scheduler` + `dask worker ADDRESS`, or one started by dask-jobqueue or
dask-kubernetes). Workers need this package installed and the raster and model paths readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from greenlens.core.allocator import reuse_freed_memory

if TYPE_CHECKING:  # a client that never runs a chunk itself needs neither opened
    from greenlens.survey.rasters import Raster
    from greenlens.survey.tile_model import TileClassifier

# Per worker process: what each model source and raster path opened to.
_models: dict[str, TileClassifier] = {}
_rasters: dict[str, Raster] = {}


def connect(scheduler: str):
    """(client, cluster or None): a local cluster for "local:N", else a client of the scheduler."""
    from distributed import Client, LocalCluster

    if scheduler.startswith("local:"):
        try:
            workers = int(scheduler.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"--scheduler {scheduler!r}: local:N needs a number of workers, e.g. local:2") from None
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    return Client(scheduler, timeout="30s"), None


def classify_on_cluster(scheduler: str, model_source: str, plans, counter) -> list[list]:
    """For each (raster path, grid, chunks, areas or None) of `plans`, its ChunkResults in chunk order. The
    areas of interest go to the workers once per raster, not with every chunk."""
    from distributed import as_completed

    model_source = _shared_path(model_source)
    client, cluster = connect(scheduler)
    try:
        futures = []
        for path, grid, chunks, areas in plans:
            shared = client.scatter(areas, broadcast=True) if areas is not None else None
            futures.append([client.submit(_classify, model_source, _shared_path(path), grid, chunk, shared, pure=False)
                            for chunk in chunks])
        for future in as_completed([f for raster in futures for f in raster]):
            counter.done(future.result())
        return [[future.result() for future in raster] for raster in futures]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _shared_path(source) -> str:
    """Local paths as absolute paths, so workers started elsewhere find them; Hub ids unchanged."""
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


def _classify(model_source: str, raster_path: str, grid, chunk, areas):
    """Runs on a worker: the model and the raster are opened on its first chunk and kept."""
    from distributed import get_worker

    from greenlens.survey.grid import classify_chunk
    from greenlens.survey.rasters import open_raster
    from greenlens.survey.tile_model import TileClassifier

    if model_source not in _models:
        # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes every large array a fresh
        # mapping; a worker started by `dask worker` gets it as well, so the worker sets it back here.
        reuse_freed_memory()
        _models[model_source] = TileClassifier.load(model_source, threads=get_worker().state.nthreads)
    if raster_path not in _rasters:
        _rasters[raster_path] = open_raster(raster_path)
    return classify_chunk(_rasters[raster_path], grid, chunk, _models[model_source], areas=areas)
