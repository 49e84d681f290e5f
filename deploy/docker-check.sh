#!/usr/bin/env bash
# Build the Docker image and prove it by running it (needs a Docker engine on Linux; about 5
# minutes with a warm build cache):
#
#   1. `docker run IMAGE --help`;
#   2. a uid /etc/passwd lacks (1000, 4242), root and the image's own uid (10001, also with a gid
#      /etc/group lacks) each have a passwd and group entry through the entrypoint:
#      getpass.getuser(), pwd.getpwuid(), `id -un`, `id -gn`, `dvc doctor`; without the entrypoint
#      the same lookup fails (the `getpwuid(): uid not found` of DVC); the baked-in project is
#      writable by a uid the image does not know in group 0 (OpenShift); `docker stop` during
#      the train stage ends the container by SIGTERM, not by the SIGKILL after the grace period;
#   3. `gapline repro`, the whole default pipeline on the built-in digits data, in a fresh clone
#      of this repository mounted at /home/gapline/project, run as the host user, as the README
#      documents it, with no network: every file it leaves there belongs to that user;
#   4. the README's mounted-project retrain (`gapline retrain`, sqlite store in the project);
#   5. `gapline retrain` of the baked-in project against an `mlflow server` on this host
#      (`--network host`): the run lands in the server, the model is registered and alias
#      `champion` points at it; a second retrain in a fresh container finds "up to date";
#   6. a retrain that starts from nothing, as the Kubernetes CronJob runs it: fresh containers
#      of the baked-in project against the team's stack on this host (PostgreSQL behind the
#      MLflow server with accounts, a WebDAV DVC remote; tests/helpers/team_stack.py), the
#      account in MLFLOW_TRACKING_USERNAME/PASSWORD and the remote's credentials in a mounted
#      .dvc/config.local. The first promotes and pushes; the second pulls (no stage rebuilt)
#      and is up to date; then a fresh clone of the champion's git commit, with its run's
#      dvc.lock and `dvc pull`, holds the registered model's very bytes.
#
#   deploy/docker-check.sh                     # build gapline:check from this checkout, then check it
#   BASE_IMAGE=gapline-base:bookworm-py311 deploy/docker-check.sh   # passed as --build-arg
#   GAPLINE_IMAGE=gapline GAPLINE_BUILD=0 deploy/docker-check.sh    # check an image already built
#
# The host user: the uid running this script, or HOST_UID (default 1000) when that is root, the
# clone then chowned to it. MLFLOW names the mlflow executable for the server (default: the one
# on PATH); PYTHON an interpreter with gapline's test extra, for step 6 (default: python3). Exits 0 when every check passed, 77 when no Docker engine is reachable, 1 otherwise.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${GAPLINE_IMAGE:-gapline:check}
MLFLOW=${MLFLOW:-mlflow}
PYTHON=${PYTHON:-python3}
PROJECT=/home/gapline/project

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "SKIP: no Docker engine is reachable"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gapline-docker-check.XXXXXX")
server_pid=""
stack_pid=""
cleanup() {
    for pid in $server_pid $stack_pid; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; exit 1; }

if [ "${GAPLINE_BUILD:-1}" != 0 ]; then
    step "docker build -t $IMAGE ${BASE_IMAGE:+--build-arg BASE_IMAGE=$BASE_IMAGE}"
    build_args=(--network host -t "$IMAGE")
    if [ -n "${BASE_IMAGE:-}" ]; then build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE"); fi
    build_args+=(--build-arg "GIT_COMMIT=$(git -C "$REPO" rev-parse HEAD)")
    start=$SECONDS
    docker build "${build_args[@]}" "$REPO" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; fail "docker build"; }
    pass "docker build: $((SECONDS - start)) s"
fi
printf 'image %s: %s bytes\n' "$IMAGE" "$(docker image inspect -f '{{.Size}}' "$IMAGE")"

# 1 -------------------------------------------------------------------------------------
step "docker run --rm $IMAGE --help"
docker run --rm "$IMAGE" --help >"$work/help.txt"
grep -q "retrain" "$work/help.txt" || fail "--help does not list retrain"
pass "--help"

# 2 -------------------------------------------------------------------------------------
step "uids without a passwd entry"
lookup='import getpass, os, pwd; print(os.getuid(), getpass.getuser(), pwd.getpwuid(os.getuid()).pw_dir)'
for user in 1000:1000 4242:4242 0:0 10001:10001 10001:1234; do
    out=$(docker run --rm --user "$user" --entrypoint gapline-entrypoint "$IMAGE" \
        sh -c "python -c '$lookup' && id -un && id -gn && cd \$(mktemp -d) && dvc init -q --no-scm && dvc doctor | grep -E '^(DVC version|Repo):'" 2>&1) \
        || fail "--user $user: $out"
    case $out in *"uid not found"*|*"unable to look up"*|*"no such user"*) fail "--user $user: $out" ;; esac
    pass "--user $user: $(echo "$out" | tr '\n' ' ')"
done
if docker run --rm --user 4242:4242 --entrypoint python "$IMAGE" -c "$lookup" >"$work/control.txt" 2>&1; then
    fail "control: without the entrypoint the lookup was expected to fail for uid 4242"
fi
grep -q "uid not found: 4242" "$work/control.txt" || fail "control: $(tail -1 "$work/control.txt")"
pass "control: without the entrypoint, uid 4242 fails: $(tail -1 "$work/control.txt")"

step "the baked-in project as a uid the image does not know, in group 0 (OpenShift)"
docker run --rm --user 4242:0 "$IMAGE" params train.epochs=2 >"$work/gid0.log" 2>&1 \
    || { tail -5 "$work/gid0.log"; fail "--user 4242:0 cannot write the baked-in project"; }
pass "--user 4242:0: $(tail -1 "$work/gid0.log")"

step "docker stop: SIGTERM reaches gapline, dvc and the stage (tini as PID 1)"
name="gapline-check-stop-$$"
docker run -d --name "$name" "$IMAGE" repro >/dev/null
for _ in $(seq 1 120); do
    docker logs "$name" 2>&1 | grep -q "Running stage 'train'" && break
    sleep 0.5
done
start=$SECONDS
docker stop -t 30 "$name" >/dev/null
took=$((SECONDS - start))
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
docker logs "$name" >"$work/stop.log" 2>&1
docker rm "$name" >/dev/null
[ "$code" != 137 ] && [ "$took" -lt 25 ] || { tail -20 "$work/stop.log"; fail "docker stop: exit $code after $took s (137: only SIGKILL ended it)"; }
pass "docker stop during the train stage: exit $code after $took s"

# 3 -------------------------------------------------------------------------------------
if [ "$(id -u)" = 0 ]; then host_uid=${HOST_UID:-1000}; host_gid=${HOST_GID:-$host_uid}; else host_uid=$(id -u); host_gid=$(id -g); fi
project="$work/project"
git clone -q "$REPO" "$project"
if [ "$(id -u)" = 0 ]; then chown -R "$host_uid:$host_gid" "$project"; fi
mounted=(--user "$host_uid:$host_gid" -v "$project:$PROJECT")

step "gapline repro in a mounted fresh clone as $host_uid:$host_gid (--network none)"
start=$SECONDS
docker run --rm --network none "${mounted[@]}" "$IMAGE" repro >"$work/repro.log" 2>&1 \
    || { tail -40 "$work/repro.log"; fail "gapline repro"; }
for stage in prepare augment train evaluate; do
    grep -q "Running stage '$stage'" "$work/repro.log" || fail "stage $stage did not run"
done
python3 -c "import json, sys; m = json.load(open(sys.argv[1])); print('test_accuracy', m['test_accuracy']); assert m['test_accuracy'] > 0.9" \
    "$project/reports/metrics.json" || fail "reports/metrics.json"
others=$(find "$project" \( -not -uid "$host_uid" -o -not -gid "$host_gid" \) -print | head -5)
[ -z "$others" ] || fail "files not owned by $host_uid:$host_gid: $others"
pass "gapline repro: $((SECONDS - start)) s, 4 stages ran, every file in the project belongs to $host_uid:$host_gid"

# 4 -------------------------------------------------------------------------------------
step "the README's mounted-project retrain (sqlite store in the project, --network none)"
docker run --rm --network none "${mounted[@]}" \
    -e MLFLOW_TRACKING_URI="sqlite:///$PROJECT/mlflow.db" "$IMAGE" retrain >"$work/retrain-mounted.log" 2>&1 \
    || { tail -40 "$work/retrain-mounted.log"; fail "mounted retrain"; }
grep -q "promoted" "$work/retrain-mounted.log" || { tail -5 "$work/retrain-mounted.log"; fail "mounted retrain promoted nothing"; }
others=$(find "$project" \( -not -uid "$host_uid" -o -not -gid "$host_gid" \) -print | head -5)
[ -z "$others" ] || fail "files not owned by $host_uid:$host_gid: $others"
pass "mounted retrain: $(tail -1 "$work/retrain-mounted.log")"

# 5 -------------------------------------------------------------------------------------
step "gapline retrain against an mlflow server on this host"
mkdir -p "$work/server"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MLFLOW" server --backend-store-uri "sqlite:///$work/server/mlflow.db" --artifacts-destination "$work/server/artifacts" \
    --host 127.0.0.1 --port "$port" --workers 1 >"$work/server.log" 2>&1 &
server_pid=$!
uri="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
    python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=2)" "$uri" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$work/server.log"; fail "mlflow server exited"; }
    sleep 1
done
start=$SECONDS
docker run --rm --network host -e MLFLOW_TRACKING_URI="$uri" "$IMAGE" retrain >"$work/retrain1.log" 2>&1 \
    || { tail -40 "$work/retrain1.log"; fail "retrain against $uri"; }
grep -q "promoted" "$work/retrain1.log" || { tail -5 "$work/retrain1.log"; fail "the first retrain promoted nothing"; }
pass "retrain: $((SECONDS - start)) s: $(tail -1 "$work/retrain1.log")"
docker run --rm --network host -e MLFLOW_TRACKING_URI="$uri" "$IMAGE" retrain >"$work/retrain2.log" 2>&1 \
    || { tail -20 "$work/retrain2.log"; fail "second retrain"; }
grep -q "up to date" "$work/retrain2.log" || { tail -5 "$work/retrain2.log"; fail "the second retrain was not up to date"; }
pass "second retrain, fresh container: $(tail -1 "$work/retrain2.log")"
python3 - "$uri" <<'EOF' || fail "the server does not hold the run and the champion"
import json, sys, urllib.parse, urllib.request

uri = sys.argv[1]
def get(path, **query):
    with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}", timeout=30) as r:
        return json.load(r)
def post(path, body):
    req = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)

champion = get("registered-models/alias", name="gapline", alias="champion")["model_version"]
run = get("runs/get", run_id=champion["run_id"])["run"]
assert run["info"]["status"] == "FINISHED", run["info"]
exp = run["info"]["experiment_id"]
runs = post("runs/search", {"experiment_ids": [exp], "max_results": 50}).get("runs", [])
names = sorted(r["info"].get("run_name", "") for r in runs)
metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
print(f"PASS server: model gapline v{champion['version']} is champion, from run {champion['run_id']} "
      f"(test_accuracy {metrics.get('test_accuracy')}); runs in the experiment: {names}")
assert "retrain" in names
EOF

# 6 -------------------------------------------------------------------------------------
step "a retrain from nothing against the team's stack (PostgreSQL, accounts, a WebDAV remote)"
commit=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$IMAGE")
[ -n "$commit" ] || fail "the image records no commit (build it with --build-arg GIT_COMMIT=...)"
PYTHONPATH="$REPO/tests" "$PYTHON" -m helpers.team_stack --root "$work/team" --env-file "$work/team.env" \
    >"$work/team.log" 2>&1 &
stack_pid=$!
for _ in $(seq 1 180); do
    [ -f "$work/team.env" ] && break
    kill -0 "$stack_pid" 2>/dev/null || { tail -20 "$work/team.log"; fail "the team stack did not start"; }
    sleep 1
done
[ -f "$work/team.env" ] || { tail -20 "$work/team.log"; fail "the team stack did not start in 180 s"; }
# shellcheck disable=SC1091
. "$work/team.env"
export MLFLOW_TRACKING_URI MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD
# what the CronJob's Secret `gapline-dvc` holds: the remote, made the default, and its account
cat >"$work/config.local" <<EOF
[core]
    remote = team
['remote "team"']
    url = $DVC_REMOTE_URL
    user = $DVC_REMOTE_USER
    password = $DVC_REMOTE_PASSWORD
EOF
chmod 644 "$work/config.local"
team_retrain() {
    docker run --rm --network host -e MLFLOW_TRACKING_URI -e MLFLOW_TRACKING_USERNAME -e MLFLOW_TRACKING_PASSWORD \
        -v "$work/config.local:$PROJECT/.dvc/config.local:ro" "$IMAGE" retrain "$@"
}
start=$SECONDS
team_retrain retrain.push=true >"$work/team1.log" 2>&1 || { tail -40 "$work/team1.log"; fail "first retrain against the team's stack"; }
grep -q "promoted" "$work/team1.log" || { tail -5 "$work/team1.log"; fail "the first team retrain promoted nothing"; }
grep -q "retrain: dvc push" "$work/team1.log" || { tail -5 "$work/team1.log"; fail "the first team retrain pushed nothing"; }
pushed=$(find "$DVC_REMOTE_FILES" -type f | wc -l)
[ "$pushed" -gt 0 ] || fail "the remote holds no file after the push"
pass "retrain, empty container, retrain.push=true: $((SECONDS - start)) s, $pushed files on the remote: $(tail -1 "$work/team1.log")"
start=$SECONDS
team_retrain retrain.pull=true retrain.push=true >"$work/team2.log" 2>&1 || { tail -40 "$work/team2.log"; fail "second retrain against the team's stack"; }
grep -Eq "retrain: dvc pull .*[1-9][0-9]* files? fetched" "$work/team2.log" || { tail -5 "$work/team2.log"; fail "the second team retrain pulled nothing"; }
grep -q "up to date" "$work/team2.log" || { tail -5 "$work/team2.log"; fail "the second team retrain was not up to date"; }
if grep -q "Running stage" "$work/team2.log"; then grep "Running stage" "$work/team2.log"; fail "the second team retrain rebuilt a stage after its pull"; fi
pass "retrain, empty container, retrain.pull=true: $((SECONDS - start)) s: $(grep 'retrain: dvc pull' "$work/team2.log")"
git clone -q "$REPO" "$work/anywhere"
git -C "$work/anywhere" checkout -q "$commit"
cp "$work/config.local" "$work/anywhere/.dvc/config.local"
(cd "$work/anywhere" && PATH="$(dirname "$PYTHON"):$PATH" "$PYTHON" - "$commit" <<'EOF') || fail "the champion does not check out anywhere"
import hashlib, shutil, subprocess, sys
from mlflow import MlflowClient

client = MlflowClient()
champion = client.get_model_version_by_alias("gapline", "champion")
run = client.get_run(champion.run_id)
assert run.data.tags.get("git.commit") == sys.argv[1], (run.data.tags.get("git.commit"), sys.argv[1])
shutil.copy(client.download_artifacts(run.info.run_id, "reports/dvc.lock", ".."), "dvc.lock")
subprocess.run([sys.executable, "-m", "dvc", "pull", "-q"], check=True)
md5 = lambda path: hashlib.md5(open(path, "rb").read()).hexdigest()
pulled = md5("models/model.keras")
registered = md5(client.download_artifacts(run.info.run_id, "model/data/model.keras", ".."))
assert pulled == registered == run.data.tags["model.md5"], (pulled, registered, run.data.tags["model.md5"])
print(f"PASS anywhere: git checkout {sys.argv[1][:12]}, the champion run's dvc.lock, dvc pull: "
      f"models/model.keras md5 {pulled} = the registered v{champion.version}'s")
EOF
printf '\nALL PASSED\n'
