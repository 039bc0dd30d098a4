# syntax=docker/dockerfile:1
# One image for every role of a deployment: the controller (`python -m service`), the Ray head
# and Ray worker nodes (`ray start ...`). Every node must run the same Python, Ray and package
# versions, which one image guarantees. See docs/deploy.md.
#
#   docker build -t nas-service .                                  # CPU (default)
#   docker build -t nas-service:cuda --build-arg TORCH_VARIANT=cu126 \
#       --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 .   # GPU workers
#
# TORCH_VARIANT picks the PyTorch build (cpu, or a CUDA one such as cu126; CUDA builds carry
# their own CUDA runtime, so a plain Python base works on a GPU host with the NVIDIA container
# toolkit). BASE_IMAGE may be any Debian/Ubuntu image; one without Python 3.11+ gets it from
# its packages.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    VIRTUAL_ENV=/opt/nas \
    PATH=/opt/nas/bin:$PATH

# A CUDA base has no Python of its own; a python:* base has one and skips this.
RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv python3-dev ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/nas

# Fashion-MNIST (dataset kind fashion_mnist without a root) ships as a Debian/Ubuntu package.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

# torch first, from the index of the chosen variant: resolved by pip alone it would be a
# CUDA build even for the CPU image.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY nas ./nas
COPY search_spaces ./search_spaces
COPY workers ./workers
COPY service ./service
RUN pip install ".[postgres]"

# Artifacts and datasets: volumes mounted at the same paths on every node (docker-compose.yml).
RUN useradd --create-home --uid 1000 nas \
    && mkdir -p /var/lib/nas/artifacts /var/lib/nas/data \
    && chown -R nas:nas /var/lib/nas
USER nas
ENV NAS_ARTIFACT_DIR=/var/lib/nas/artifacts \
    NAS_DATA_ROOT=/var/lib/nas/data

EXPOSE 8000 6379 8265
# The controller: migrations (a start step), then uvicorn. Ray nodes override the command.
CMD ["python", "-m", "service"]
