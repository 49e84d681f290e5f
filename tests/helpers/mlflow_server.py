"""A real ``mlflow server`` on a free local port: a sqlite backend by default, or any backend
store URI (PostgreSQL); artifacts proxied by the server into a local folder; optionally
MLflow's own accounts (``--app-name basic-auth``) with an admin whose password is set here."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers.processes import BIN, free_port, stop_group

SERVER_START_TIMEOUT = 120.0


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


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

    def _auth_config(self) -> Path:
        ini = self.root / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {self.auth_db}\n"
            f"admin_username = {ADMIN}\n"
            f"admin_password = {ADMIN_PASSWORD}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # each request otherwise pays a PBKDF2 hash of the password (deploy/team does the same)
            "auth_cache_ttl_seconds = 60\n"
        )
        return ini

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        last = ""
        for attempt in range(attempts):
            self.port = free_port()
            self.log = self.root / f"server-{attempt}.log"
            cmd = [
                str(BIN / "mlflow"), "server",
                "--backend-store-uri", self.backend or f"sqlite:///{self.root / 'db'}",
                "--artifacts-destination", str(self.root / "art"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
            if self.auth_db:
                cmd += ["--app-name", "basic-auth"]
                env["MLFLOW_AUTH_CONFIG_PATH"] = str(self._auth_config())
                env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "test-csrf-key"
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(
                    cmd, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    status, body = _get(f"{self.url}/health", timeout=2)
                    if status == 200 and body.strip() == b"OK":
                        return self
                except OSError:
                    pass
                time.sleep(0.25)
            last = self.log.read_text(errors="replace")[-3000:]
            stop_group(self.proc)
        raise RuntimeError(f"mlflow server did not become healthy after {attempts} attempts:\n{last}")

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
