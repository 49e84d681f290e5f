# syntax=docker/dockerfile:1
# gapline: the `gapline` CLI (pipeline stages, retrain, promote, study) in a CPU image.
#
#   docker build -t gapline .
#   docker run --rm gapline retrain --help
#
# GPU: `--build-arg ACCELERATOR=gpu` swaps tensorflow-cpu for TensorFlow with its CUDA
# libraries (pip wheels; run with `--gpus all`). BASE_IMAGE may name any Debian-based image
# with Python 3.11 on the PATH as `python` (for a CUDA base, also pass a GIT_VERSION its apt
# has). Every Python package is pinned by deploy/constraints.txt. See docs/retraining.md.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# deps: every dependency, installed from a stub of the package, so that this layer (and the big
# venv layer of the runtime stage) is rebuilt only when pyproject.toml or the pins change.
FROM ${BASE_IMAGE} AS deps
ARG ACCELERATOR=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY deploy/constraints.txt ./deploy/constraints.txt
COPY pyproject.toml ./
# Trimmed after the install: TensorFlow's C++ headers (for building custom ops) and the test
# suites of the libraries below (never imported at run time).
RUN mkdir -p src/gapline \
    && touch README.md src/gapline/__init__.py \
    && python -m venv /opt/venv \
    && pip install --no-cache-dir -c deploy/constraints.txt ".[team]" \
    && pip uninstall -y gapline \
    && if [ "$ACCELERATOR" = "gpu" ]; then \
         pip uninstall -y tensorflow-cpu \
         && pip install --no-cache-dir -c deploy/constraints.txt \
              "tensorflow[and-cuda]==2.21.0" "nvidia-ml-py==13.615.71"; \
       fi \
    && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && rm -rf "$site/tensorflow/include" \
    && for pkg in pandas scipy numpy sklearn networkx pyarrow matplotlib; do \
         if [ -d "$site/$pkg" ]; then find "$site/$pkg" -type d -name tests -prune -exec rm -rf {} +; fi; \
       done \
    && rm -rf /src

# build: gapline itself into that venv; /stage gets only its files (package, console script,
# metadata), for a small layer of their own in the runtime stage.
FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . \
    && gapline --help >/dev/null \
    && python -c "import importlib.metadata as m, pathlib, shutil; \
[(pathlib.Path('/stage' + str(p.parent)).mkdir(parents=True, exist_ok=True), shutil.copy2(p, '/stage' + str(p))) \
 for p in (f.locate().resolve() for f in m.files('gapline')) if p.is_file()]"

FROM ${BASE_IMAGE} AS runtime
# git: DVC runs the pipeline in a git work tree, and runs are tagged with its commit.
# libnss-wrapper: the entrypoint gives a `docker run --user` uid that /etc/passwd lacks an entry.
# tini: PID 1, so `docker stop` / Kubernetes' SIGTERM reach gapline, dvc and the stage running
# (-g: the whole process group); Python as PID 1 would ignore it until the SIGKILL.
ARG GIT_VERSION=1:2.39.*
ARG NSS_WRAPPER_VERSION=1.1.*
ARG TINI_VERSION=0.19.*
ARG GAPLINE_UID=10001
RUN apt-get update \
    && apt-get install -y --no-install-recommends "git=${GIT_VERSION}" "libnss-wrapper=${NSS_WRAPPER_VERSION}" \
         "tini=${TINI_VERSION}" \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system safe.directory '*' \
    && groupadd --gid "${GAPLINE_UID}" gapline \
    && useradd --uid "${GAPLINE_UID}" --gid "${GAPLINE_UID}" --create-home --shell /usr/sbin/nologin gapline \
    && install -d -o "${GAPLINE_UID}" -g "${GAPLINE_UID}" /home/gapline/project
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /stage/ /
COPY deploy/docker-entrypoint.sh /usr/local/bin/gapline-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/gapline \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_TRACKING_URI=sqlite:////home/gapline/project/mlflow.db
WORKDIR /home/gapline/project
# The baked-in project: conf/, the pipeline, and the sources its DVC stages depend on.
# Mount a project of your own over /home/gapline/project to use that one instead. dvc.lock
# names the commit's outputs, so `gapline retrain retrain.pull=true` (or `dvc pull`) fetches
# them from the team's remote instead of rebuilding them. GIT_COMMIT (`git rev-parse HEAD` of
# the build context) is the commit the runs of this project record: it has no .git of its own.
COPY --chown=${GAPLINE_UID}:${GAPLINE_UID} conf ./conf
COPY --chown=${GAPLINE_UID}:${GAPLINE_UID} src ./src
COPY --chown=${GAPLINE_UID}:${GAPLINE_UID} .dvc/config ./.dvc/config
COPY --chown=${GAPLINE_UID}:${GAPLINE_UID} .dvcignore dvc.yaml dvc.lock pyproject.toml ./
COPY --chown=${GAPLINE_UID}:${GAPLINE_UID} data/raw/README.md ./data/raw/README.md
USER ${GAPLINE_UID}:${GAPLINE_UID}
# A git work tree for DVC, and params.yaml composed from this image's conf/.
RUN git init -q . \
    && gapline params \
    && mkdir -p .gapline reports models
# The baked-in project and HOME also belong to group 0 with the owner's rights, so that a uid
# the image does not know runs it when its gid is 0 (OpenShift's random uids; `--user 4242:0`).
USER 0
RUN chgrp -R 0 /home/gapline && chmod -R g=u /home/gapline
USER ${GAPLINE_UID}:${GAPLINE_UID}
ARG GIT_COMMIT=""
ENV GAPLINE_GIT_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.revision=${GIT_COMMIT}
ENTRYPOINT ["tini", "-g", "--", "gapline-entrypoint", "gapline"]
CMD ["--help"]
