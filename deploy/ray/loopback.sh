#!/usr/bin/env bash
# A two-node Ray cluster and one MLflow server on 127.0.0.1, and a gapline sweep fanned out
# over it with Hydra's ray launcher. The same commands, with real addresses, run a sweep on a
# real cluster: start the head, join the workers, point RAY_ADDRESS and MLFLOW_TRACKING_URI
# at them (see "Past one machine" in the README).
#
#   pip install -e '.[ray]'        # hydra-ray-launcher + ray, into the project's venv
#   bash deploy/ray/loopback.sh    # run from the repository root; prints a verdict, exit 0 = ok
#
# Override the sweep with arguments: bash deploy/ray/loopback.sh regularization=none,l2,dropout
set -euo pipefail

HEAD_PORT=${HEAD_PORT:-6380}
MLFLOW_PORT=${MLFLOW_PORT:-5055}
WORK=$(mktemp -d -t gapline-ray-XXXXXX)
SWEEP=("$@")
[ ${#SWEEP[@]} -gt 0 ] || SWEEP=(regularization=none,l2,dropout,batch_norm)

cleanup() {
  ray stop --force >/dev/null 2>&1 || true
  [ -n "${MLFLOW_PID:-}" ] && kill "$MLFLOW_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== MLflow server on 127.0.0.1:$MLFLOW_PORT (sqlite + local artifacts under $WORK)"
mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" \
  --backend-store-uri "sqlite:///$WORK/mlflow.db" --artifacts-destination "$WORK/artifacts" \
  >"$WORK/mlflow.log" 2>&1 &
MLFLOW_PID=$!
export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"
for _ in $(seq 120); do
  curl -sf "$MLFLOW_TRACKING_URI/health" >/dev/null && break
  sleep 1
done
curl -sf "$MLFLOW_TRACKING_URI/health" >/dev/null || { echo "mlflow server did not start"; cat "$WORK/mlflow.log"; exit 1; }

echo "== Ray head and one worker node on 127.0.0.1 (1 CPU each)"
ray start --head --node-ip-address=127.0.0.1 --port="$HEAD_PORT" --num-cpus=1 \
  --include-dashboard=false --disable-usage-stats >"$WORK/ray-head.log" 2>&1
ray start --address="127.0.0.1:$HEAD_PORT" --node-ip-address=127.0.0.1 --num-cpus=1 \
  --disable-usage-stats >"$WORK/ray-worker.log" 2>&1
export RAY_ADDRESS="127.0.0.1:$HEAD_PORT"
ray status 2>/dev/null | sed -n '/Node status/,/Pending/p'

echo "== gapline sweep over the cluster: ${SWEEP[*]}"
start=$(date +%s)
gapline train -m launcher=ray experiment=debug tracking.experiment=ray-loopback \
  hydra.sweep.dir="$WORK/multirun" "${SWEEP[@]}"
echo "sweep wall time: $(( $(date +%s) - start )) s"

echo "== what the MLflow server holds"
python - <<'PY'
import os, sys
from mlflow import MlflowClient

client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
exp = client.get_experiment_by_name("ray-loopback")
runs = client.search_runs([exp.experiment_id])
parents = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
hosts = sorted({r.data.tags.get("gapline.ray_node", "?") for r in children})
for r in children:
    print(f"  child {r.info.run_name:40s} {r.info.status:9s} test_accuracy={r.data.metrics.get('test_accuracy', float('nan')):.4f}"
          f"  ray node {r.data.tags.get('gapline.ray_node', '?')[:12]}")
ok = (len(parents) == 1 and parents[0].info.status == "FINISHED" and children
      and all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children))
print(f"parent run {parents[0].info.run_id if parents else None}: {parents[0].info.status if parents else 'missing'}; "
      f"{len(children)} child runs on {len(hosts)} Ray node(s)")
print("OK: every job ran on the cluster and logged to the one server" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
