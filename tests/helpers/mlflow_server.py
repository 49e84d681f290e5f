"""A real ``mlflow server`` on a free local port: a sqlite backend by default, or any backend
store URI (PostgreSQL); artifacts proxied by the server into a local folder; optionally
MLflow's own accounts (``--app-name basic-auth``) with an admin whose password is set here."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers.processes import BIN, free_port, stop_group, wait_for

SERVER_START_TIMEOUT = 120.0


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


TEAM_SERVER = Path(__file__).resolve().parents[2] / "deploy" / "team" / "mlflow-server.sh"
ADMIN = "admin"
ADMIN_PASSWORD = "admin-test-password-8e2f"  # tests look for it in every output


@dataclass
class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with proxied artifacts under ``root/art``.

    ``backend``: the backend store URI (default: sqlite in ``root``). ``auth_db``: with it, the
    server runs MLflow's basic-auth app, its users and permissions in that database, and
    ``ADMIN``/``ADMIN_PASSWORD`` as the admin account.
    """

    root: Path
    backend: str = ""
    auth_db: str = ""
    workers: int = 1
    port: int = 0
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        last = ""
        for attempt in range(attempts):
            self.port = free_port()
            self.log = self.root / f"server-{attempt}.log"
            options = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
            # MLflow 3's job runner (server-side jobs such as prompt optimization; gapline submits
            # none) starts 7 worker processes with every server: 11.3 s and 12.9 CPU-s to healthy
            # with it, 6.6 s and 5.8 CPU-s without (helper-6, session 15)
            env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
            if self.auth_db:  # the team's server, started as deploy/team/mlflow-server.sh starts it
                cmd = ["bash", str(TEAM_SERVER), *options]
                env.update(
                    MLFLOW_BACKEND_STORE_URI=self.backend or f"sqlite:///{self.root / 'db'}",
                    MLFLOW_AUTH_DATABASE_URI=self.auth_db,
                    MLFLOW_ARTIFACTS_DESTINATION=str(self.root / "art"),
                    MLFLOW_FLASK_SERVER_SECRET_KEY="test-csrf-key",
                    MLFLOW_AUTH_ADMIN_USERNAME=ADMIN,
                    MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
                )
            else:
                cmd = [
                    str(BIN / "mlflow"), "server",
                    "--backend-store-uri", self.backend or f"sqlite:///{self.root / 'db'}",
                    "--artifacts-destination", str(self.root / "art"), *options,
                ]
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(
                    cmd, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            if wait_for(self.proc, self._healthy, SERVER_START_TIMEOUT):
                return self
            last = self.log.read_text(errors="replace")[-3000:]
            stop_group(self.proc)
        raise RuntimeError(f"mlflow server did not become healthy after {attempts} attempts:\n{last}")

    def _healthy(self) -> bool:
        try:
            status, body = _get(f"{self.url}/health", timeout=2)
        except OSError:
            return False
        return status == 200 and body.strip() == b"OK"

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def admin(self, path: str, payload: dict) -> dict:
        """POST ``payload`` to the auth app's REST ``path`` as the admin; the JSON answer."""
        import requests

        resp = requests.post(f"{self.url}{path}", json=payload, auth=(ADMIN, ADMIN_PASSWORD), timeout=30)
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text[:300]}"
        return resp.json() if resp.text.strip() else {}

    def create_user(self, username: str, password: str) -> None:
        self.admin("/api/2.0/mlflow/users/create", {"username": username, "password": password})

    def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        """Give ``username`` ``permission`` (READ, EDIT, MANAGE) on an ``experiment`` or a
        ``registered_model`` (by id or name)."""
        self.admin("/api/3.0/mlflow/users/permissions/grant", {
            "username": username, "resource_type": resource_type, "resource_id": resource_id, "permission": permission,
        })
