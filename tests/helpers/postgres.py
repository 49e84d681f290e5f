"""A real PostgreSQL server for the tests: ``initdb`` into a temporary folder, listening on
127.0.0.1 only, password authentication (scram-sha-256) for every TCP client.

Debian's ``postgresql`` package provides the binaries (``make test`` installs it where it
is missing and apt-get can run). PostgreSQL refuses to run as root, so as root the cluster
belongs to the package's ``postgres`` user and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.processes import free_port

PASSWORD = "pg-test-password-5c1d"  # the cluster's superuser password (tests look for it in outputs)


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def missing() -> str | None:
    """Why no test server can start here (one line for a skip), or None."""
    folder = binaries()
    if folder is None:
        return "PostgreSQL is not installed (Debian's postgresql package; `make test` installs it as root)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no 'postgres' user to own the test cluster"
    return None


@dataclass
class Postgres:
    """One cluster in ``root`` (as root: in a folder of its own under /tmp, removed by
    :meth:`stop`); :meth:`create_database` gives each user of it its own database."""

    root: Path
    user: str = "gapline"
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str, *, password: bool = True) -> str:
        """A SQLAlchemy URL of ``database`` (psycopg 3, SQLAlchemy 2's default PostgreSQL driver)."""
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{self.user}{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)

    def start(self) -> Postgres:
        folder = binaries()
        assert folder is not None, missing()
        if os.geteuid() == 0:
            # pytest's folders are root's alone (0700): the postgres user could not reach one
            self.root = Path(tempfile.mkdtemp(prefix="gapline-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        init = self._run([
            str(folder / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync",
        ])
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        for attempt in range(3):
            self.port = free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
            started = self._run([str(folder / "pg_ctl"), "-D", str(self.data), "-o", options,
                                 "-l", str(self.root / f"server-{attempt}.log"), "-w", "-t", "60", "start"])
            if started.returncode == 0:
                return self
        log = (self.root / "server-2.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start:\n{started.stdout}\n{started.stderr}\n{log}")

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name``; returns its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        folder = binaries()
        if folder is not None and self.data.exists():
            self._run([str(folder / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        if self.root.name.startswith("gapline-pg-"):
            shutil.rmtree(self.root, ignore_errors=True)
