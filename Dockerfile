# One image for the web and the worker. GPU workers: the compose file reserves an NVIDIA GPU and
# sets OCR_DEVICE=auto; onnxruntime uses CUDA when the image carries onnxruntime-gpu (see README).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 APP_VAR_DIR=/var/lib/serialread
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -r requirements.txt \
    && pip install --force-reinstall --no-deps opencv-python-headless==5.0.0.93
COPY . .
RUN DJANGO_SECRET_KEY=build python manage.py collectstatic --noinput -v 0
EXPOSE 8000
CMD ["uvicorn", "ocrapp.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--lifespan", "off", "--timeout-graceful-shutdown", "5", "--no-server-header"]
