# syntax=docker/dockerfile:1
# gpuctl's image: `gpuctl serve` (the Slack bot and the executor) for deploy/; any
# other command runs too (`docker run IMAGE snapshot --kubeconfig ...`).
#
#   docker build -t gpuctl:0.1.0 .
#
# Base image: pinned by tag only. No registry is reachable where this file was
# written, so no digest could be read or checked; pin one when you build:
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # → sha256:…
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:… .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# 1. Wheels: gpuctl's (with its package data: built-in playbooks, TUI styles) and every dependency's.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gpuctl ./gpuctl
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# 2. The runtime: those wheels only (no build tools, no sources), run as a fixed non-root uid that
#    deploy/base/deployment.yaml's securityContext names too.
FROM ${PYTHON_IMAGE}
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels gpuctl \
 && groupadd --system --gid 10001 gpuctl \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/gpuctl --shell /usr/sbin/nologin gpuctl \
 && install -d -o 10001 -g 10001 /var/lib/gpuctl
# HOME holds the default SQLite audit log (~/.local/state/gpuctl); the Deployment mounts a volume there,
# the root filesystem being read-only. No .pyc written at run time, logs unbuffered.
ENV HOME=/var/lib/gpuctl PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /var/lib/gpuctl
USER 10001:10001
EXPOSE 3000
ENTRYPOINT ["gpuctl"]
CMD ["serve"]
