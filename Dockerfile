# syntax=docker/dockerfile:1
#
# cellcount inference service.
#
#   docker build -t cellcount:cuda .                           # GPU image (default)
#   docker build --build-arg VARIANT=cpu -t cellcount:cpu .    # CPU-only image
#
# Both variants install torch first from the PyTorch index of their flavour, then the project
# itself from pyproject.toml (`pip install /src`), whose `torch==X` pin the first step satisfies:
# there is no second dependency list to drift. The shipped weights are baked in; mount another
# checkpoint and set CELLCOUNT_CHECKPOINT (and CELLCOUNT_CHECKPOINT_SHA256) to serve it instead.
# docs/deploy.md has the whole story.

# cuda | cpu
ARG VARIANT=cuda
# Same release as the pin in pyproject.toml (tests/docker checks that they agree).
ARG TORCH_VERSION=2.13.0
# torch's CUDA wheels carry their own CUDA runtime, cuBLAS and cuDNN (as nvidia-* wheels), so the
# CUDA base only has to provide the driver plumbing (NVIDIA_* variables, forward-compat libraries);
# a -cudnn-runtime base would ship a second copy of the same libraries.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG CUDA_TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG CPU_IMAGE=python:3.11-slim-bookworm
ARG CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Optional extras of the project to install: `formats` brings the Zeiss CZI, Nikon ND2 and Leica
# LIF readers (about 23 MiB); build with --build-arg EXTRAS= for an image without them.
ARG EXTRAS=formats
# Only used to fetch a standalone CPython 3.11 for the Ubuntu-based CUDA image.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

# ---- Python 3.11 in /opt/venv, one stage per variant -------------------------------------------
FROM ${CUDA_IMAGE} AS python-cuda
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed UV_NO_CACHE=1 \
    uv venv --seed --python 3.11 /opt/venv

FROM ${CPU_IMAGE} AS python-cpu
RUN python -m venv /opt/venv

# ---- build: torch of the right flavour, then the project ---------------------------------------
# (python-${VARIANT} names a stage above, hence no tag for hadolint's DL3006.)
# hadolint ignore=DL3006
FROM python-${VARIANT} AS build
ARG VARIANT
ARG TORCH_VERSION
ARG CUDA_TORCH_INDEX
ARG CPU_TORCH_INDEX
ARG EXTRAS
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=cache,target=/root/.cache/pip \
    case "$VARIANT" in cpu) index="$CPU_TORCH_INDEX" ;; *) index="$CUDA_TORCH_INDEX" ;; esac \
    && pip install "torch==${TORCH_VERSION}" --index-url "$index"
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY model_training /src/model_training
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install /src"${EXTRAS:+[$EXTRAS]}" \
    && python -c "import torch, service.app; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    && case ",$EXTRAS," in *,formats,*) python -c "import czifile, nd2, readlif.reader" ;; esac \
    && if [ "$VARIANT" = cpu ]; then python -c "import torch; assert torch.version.cuda is None"; \
       else python -c "import torch; assert torch.version.cuda is not None"; fi
# Files keep their mode through COPY; make them readable by the unprivileged user here, so the
# final stage needs no extra layer for it.
COPY weights /src/weights
COPY docker/entrypoint.sh /src/docker/entrypoint.sh
RUN chmod -R a+rX,go-w /src/weights && chmod 0755 /src/docker/entrypoint.sh

# ---- runtime -----------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM python-${VARIANT} AS runtime
ARG VARIANT
RUN groupadd --system --gid 10001 cellcount \
    && useradd --system --uid 10001 --gid cellcount --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin cellcount
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/weights /app/weights
COPY --from=build /src/docker/entrypoint.sh /app/docker/entrypoint.sh
WORKDIR /app
# The package is installed into site-packages, so the code's default checkpoint path (next to the
# package) does not exist here: name the baked-in file explicitly.
# Nothing is written at run time except under /tmp (an emptyDir / tmpfs when the root filesystem
# is read-only); the cache variables keep libraries that would write under $HOME there too.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRACEFUL_TIMEOUT=65 \
    CELLCOUNT_CHECKPOINT=/app/weights/unet32.safetensors \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    CUDA_CACHE_PATH=/tmp/.nv
LABEL org.opencontainers.image.title="cellcount" \
      org.opencontainers.image.description="U-Net cell counting service (${VARIANT})"
USER 10001:10001
EXPOSE 8000
# Start-up loads the model and measures the inference plan before the port opens; the start
# period covers that (a few seconds on CPU with pinned geometry, longer while a GPU is tuned).
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PORT', '8000'), timeout=4)"]
# SIGTERM reaches uvicorn directly (exec form here, `exec` in the script): it stops accepting,
# lets in-flight requests finish for GRACEFUL_TIMEOUT seconds, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/docker/entrypoint.sh"]
