"""``mlflow models serve`` as the tests run it: a real server process on a free local port,
waited for until it answers ``/ping``, stopped with its process group."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from helpers.processes import BIN, free_port, http_status, stop_group, wait_for

SERVE_TIMEOUT = 180.0


@contextlib.contextmanager
def models_serve(model_uri: str, env: dict[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """Serve ``model_uri`` with this virtualenv's MLflow (``--env-manager local``), the
    process's output in ``log``; yields the server's base URL."""
    port = free_port()
    env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}  # mlflow runs uvicorn from PATH
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_for(proc, lambda: http_status(f"{url}/ping") == 200, SERVE_TIMEOUT, 0.5)
        assert ready, f"mlflow models serve never answered /ping:\n{log.read_text(errors='replace')[-4000:]}"
        yield url
    finally:
        stop_group(proc)
