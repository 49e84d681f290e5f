"""The team's stack on this host for checks that run outside pytest (deploy/docker-check.sh
runs containers against it): PostgreSQL, the team's MLflow server with accounts
(deploy/team/mlflow-server.sh) and one user, and a WebDAV server for the DVC remote; the
same helpers the team tests start, so the container meets what the tests proved.

    PYTHONPATH=tests python -m helpers.team_stack --root DIR --env-file FILE

writes what a client needs into FILE as shell assignments once everything answers, then
serves until SIGTERM or SIGINT and stops it all.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import threading
from pathlib import Path

from helpers import postgres
from helpers.mlflow_server import MlflowServer
from helpers.webdav import WebDav

USER = ("alice", "alice-docker-password-71c2")
DAV = ("dvc", "dvc-docker-password-2f90")
REMOTE_FOLDER = "gapline"  # the operator makes the remote's folder once


def stop_at_once(server: MlflowServer) -> None:
    """Stop a test's MLflow server without its graceful shutdown, which nothing tested depends
    on and which takes seconds: ``mlflow server`` stops its job runner's huey consumers, and
    without its database it waits on it. Its processes below the one the helper started are
    killed; that one (``mlflow server``, or deploy/team/mlflow-server.sh, which then removes
    its config file as usual) is stopped by :meth:`MlflowServer.stop`."""
    import psutil

    if server.proc is not None and server.proc.poll() is None:
        try:
            below = psutil.Process(server.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            below = []
        for proc in below:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()  # SIGKILL: gone at once (what is left to reap, its parent or init reaps)
    server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a folder for the servers' files")
    parser.add_argument("--env-file", type=Path, required=True, help="where the client settings go")
    args = parser.parse_args()
    why = postgres.missing()
    if why:
        print(f"error: {why}")
        return 77
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    db = postgres.Postgres(args.root / "pg")
    server = MlflowServer(args.root / "server", workers=2)
    dav = WebDav(args.root / "dav", *DAV)
    try:
        db.start()
        server.backend, server.auth_db = db.create_database("mlflow"), db.create_database("mlflow_auth")
        server.start()
        server.create_user(*USER)
        dav.start()
        (dav.files / REMOTE_FOLDER).mkdir()
        settings = {
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_TRACKING_USERNAME": USER[0],
            "MLFLOW_TRACKING_PASSWORD": USER[1],
            "DVC_REMOTE_URL": dav.url(REMOTE_FOLDER),
            "DVC_REMOTE_USER": DAV[0],
            "DVC_REMOTE_PASSWORD": DAV[1],
            "DVC_REMOTE_FILES": str(dav.files / REMOTE_FOLDER),
        }
        partial = args.env_file.with_suffix(".partial")
        partial.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items()))
        partial.replace(args.env_file)  # whole, or not there
        print(f"team stack up: {server.url}, {dav.url(REMOTE_FOLDER)}", flush=True)
        stop.wait()
    finally:
        dav.stop()
        server.stop()
        db.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
