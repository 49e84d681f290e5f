"""A real ``mlflow server`` on a free local port (sqlite backend, local artifact root)."""

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


@dataclass
class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a sqlite backend and a local artifact root."""

    root: Path
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
            cmd = [
                str(BIN / "mlflow"), "server",
                "--backend-store-uri", f"sqlite:///{self.root / 'db'}",
                "--artifacts-destination", str(self.root / "art"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
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
