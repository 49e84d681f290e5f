# syntax=docker/dockerfile:1
# CPU image by default; for a GPU base pass e.g.
#   --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 (with Python 3.11 on it)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

FROM ${BASE_IMAGE} AS runtime
# git: DVC needs it to run the pipeline inside the project folder.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 gapline
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    MLFLOW_TRACKING_URI=sqlite:////home/gapline/project/mlflow.db \
    PYTHONUNBUFFERED=1
WORKDIR /home/gapline/project
COPY --chown=gapline:gapline conf ./conf
COPY --chown=gapline:gapline src ./src
COPY --chown=gapline:gapline .dvc/config ./.dvc/config
COPY --chown=gapline:gapline dvc.yaml params.yaml pyproject.toml ./
COPY --chown=gapline:gapline data/raw/README.md ./data/raw/README.md
USER gapline
RUN git init -q . && git config user.email gapline@localhost && git config user.name gapline
ENTRYPOINT ["gapline"]
CMD ["--help"]
