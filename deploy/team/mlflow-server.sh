#!/usr/bin/env bash
# The team's MLflow tracking server: PostgreSQL behind it, MLflow's own accounts in front
# (`--app-name basic-auth`), artifacts proxied (clients never touch the artifact storage).
# tests/e2e/test_team_tracking.py starts the server with this very script.
#
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:…@db:5432/mlflow \
#   MLFLOW_AUTH_DATABASE_URI=postgresql://mlflow:…@db:5432/mlflow_auth \
#   MLFLOW_AUTH_ADMIN_PASSWORD=… MLFLOW_FLASK_SERVER_SECRET_KEY=… \
#   MLFLOW_ARTIFACTS_DESTINATION=/srv/mlflow/artifacts deploy/team/mlflow-server.sh --host 0.0.0.0 --port 5000
#
# Needs `pip install 'gapline[team]'` (mlflow[auth], psycopg). The admin account is created
# with MLFLOW_AUTH_ADMIN_PASSWORD the first time the auth database is empty; later starts
# ignore it. Any further arguments go to `mlflow server` (--host, --port, --workers).
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql://user:password@host:port/db)}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (a database for accounts and permissions)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (a folder, or s3://…)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (the same on every server process)}"
: "${MLFLOW_AUTH_ADMIN_USERNAME:=admin}"
# Users who start with no explicit grant may read everything and change nothing.
: "${MLFLOW_AUTH_DEFAULT_PERMISSION:=READ}"
# Seconds a checked password is trusted: without it every request pays a PBKDF2 hash (a
# pipeline against the server took 2.2x as long in tests/e2e/test_team_tracking.py).
: "${MLFLOW_AUTH_CACHE_TTL_SECONDS:=60}"

config="$(mktemp -d)/basic_auth.ini"
trap 'rm -rf "$(dirname "$config")"' EXIT
cat > "$config" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS}
INI
chmod 600 "$config"
export MLFLOW_AUTH_CONFIG_PATH="$config"

mlflow server --app-name basic-auth \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; rm -rf "$(dirname "$config")"' TERM INT
wait "$server"
