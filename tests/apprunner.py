"""Starts the real app (`python app.py`) in a subprocess on a free port and waits until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from .conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(env: dict[str, str] | None = None, timeout: float = 180, *, folder=ROOT):
    """`python app.py` of `folder` (this checkout, or e.g. a downloaded Space), its own copy of greenlens
    first on the path, and a Gradio cache of its own unless `env` names one; yields (url, process)."""
    # A cache of its own: Gradio names result files by their content's hash, so apps sharing /tmp/gradio would share
    # files, and one app's delete_cache could remove a file another serves.
    with (tempfile.TemporaryDirectory(prefix="gradio-cache-") as cache,
          _app_process({"GRADIO_TEMP_DIR": cache, **(env or {})}, timeout, folder=folder) as running):
        yield running


@contextmanager
def _app_process(env: dict[str, str], timeout: float, *, folder):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    environment = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                   "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **env}
    # A file, not a pipe: nobody reads a pipe while the app runs, and a full one would block it.
    log_path = os.environ.get("APP_LOG")
    # Open as long as the app runs; closed (and removed) in the finally below.
    log = open(log_path, "w+") if log_path else tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([sys.executable, str(Path(folder) / "app.py")], cwd=folder, env=environment,
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"app exited with {process.returncode}:\n{log.read()}")
            try:
                urllib.request.urlopen(url + "config", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise TimeoutError(f"app did not answer on {url} within {timeout} s")
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        if not log_path:
            os.unlink(log.name)
