"""A real WebDAV server for DVC remotes: WsgiDAV on cheroot, 127.0.0.1 only, basic auth with
one account, serving a local folder."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from helpers.processes import BIN, free_port, http_status, stop_group, wait_for


@dataclass
class WebDav:
    """``wsgidav`` serving ``root/files`` to ``user``:``password``."""

    root: Path
    user: str
    password: str
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def files(self) -> Path:
        return self.root / "files"

    def url(self, path: str = "") -> str:
        """DVC's ``webdav://`` URL of ``path`` on this server (plain HTTP, as on a trusted LAN)."""
        return f"webdav://127.0.0.1:{self.port}/{path}"

    def start(self) -> WebDav:
        self.files.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.port = free_port()
            config = self.root / "wsgidav.yaml"
            config.write_text(
                f"host: 127.0.0.1\nport: {self.port}\nserver: cheroot\n"
                f'provider_mapping:\n  "/": "{self.files}"\n'
                "http_authenticator:\n  accept_basic: true\n  accept_digest: false\n  default_to_digest: false\n"
                f'simple_dc:\n  user_mapping:\n    "*":\n      "{self.user}":\n        password: "{self.password}"\n'
                "verbose: 1\nlogging:\n  enable: false\n"
            )
            log = self.root / f"wsgidav-{attempt}.log"
            with open(log, "wb") as out:
                self.proc = subprocess.Popen([str(BIN / "wsgidav"), "--config", str(config)], cwd=self.root,
                                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            # up once it asks for credentials
            if wait_for(self.proc, lambda: http_status(f"http://127.0.0.1:{self.port}/") == 401, 30, 0.2):
                return self
            stop_group(self.proc)
        raise RuntimeError(f"wsgidav did not start:\n{log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None
