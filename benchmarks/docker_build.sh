#!/usr/bin/env bash
# Docker image size and build time (BENCHMARKS.md, section 12). Builds, each with --no-cache:
# the Dockerfile of BEFORE_REF (default 4ff950e, the last commit before issue #16 part 4) and
# this checkout's; then rebuilds this checkout's with a warm cache after a src-only change (a
# comment appended to src/gapline/__init__.py, in a copy of the tree). Prints wall times, image
# sizes (`docker image inspect -f '{{.Size}}'`) and the layers (`docker history`).
#
#   benchmarks/docker_build.sh | tee benchmarks/results/docker/build.txt
#   BASE_IMAGE=gapline-base:bookworm-py311 benchmarks/docker_build.sh   # where nothing can be pulled
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BEFORE_REF=${BEFORE_REF:-4ff950e}
args=(--network host)
if [ -n "${BASE_IMAGE:-}" ]; then args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE"); fi
work=$(mktemp -d "${TMPDIR:-/tmp}/gapline-docker-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "engine: $(docker version -f '{{.Server.Version}}') ($(docker info -f '{{.Driver}}') storage), $(nproc) CPUs, base ${BASE_IMAGE:-python:3.11-slim-bookworm}"
echo "after: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- Dockerfile deploy src pyproject.toml || echo ' + uncommitted changes')"

build() {  # tag context label
    local start end
    start=$(date +%s.%N)
    docker build "${args[@]}" "${@:4}" -t "$1" "$2" >"$work/$1.log" 2>&1 || { tail -30 "$work/$1.log"; exit 1; }
    end=$(date +%s.%N)
    printf '%-44s %6.1f s   image %s: %s bytes\n' "$3" "$(echo "$end - $start" | bc)" "$1" "$(docker image inspect -f '{{.Size}}' "$1")"
}

mkdir "$work/before"
git -C "$REPO" archive "$BEFORE_REF" | tar -x -C "$work/before"
build gapline-bench:before "$work/before" "cold build, Dockerfile of $BEFORE_REF" --no-cache
build gapline-bench:after "$REPO" "cold build, this checkout" --no-cache
mkdir "$work/after"
tar -C "$REPO" --exclude=.git --exclude=.venv -c . | tar -x -C "$work/after"
echo "# docker_build.sh: a src-only change" >>"$work/after/src/gapline/__init__.py"
build gapline-bench:after-src "$work/after" "warm rebuild after a src-only change"
grep -E '^Step [0-9]+/[0-9]+ :|Using cache' "$work/gapline-bench:after-src.log" | grep -c 'Using cache' | sed 's/^/  steps from cache in the warm rebuild: /'

for tag in before after after-src; do
    echo
    echo "docker history gapline-bench:$tag (layers that are not empty)"
    docker history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "gapline-bench:$tag" | awk -F'\t' '$1 != "0B"' | cut -c1-150
done
echo
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep '^gapline-bench:'
