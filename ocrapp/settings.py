"""Django settings. Everything that differs between machines comes from the environment.

Defaults suit the embedded development stack started by ``python -m ocrapp.devstack run``.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.utils.translation import gettext_lazy as _

from ocrapp.config import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    database_from_url,
    env_bool,
    env_int,
    image_storage_from_env,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("APP_VAR_DIR", BASE_DIR / "var"))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # Development default only: production deployments set DJANGO_SECRET_KEY (see README).
    SECRET_KEY = "dev-insecure-key-set-DJANGO_SECRET_KEY-in-production"
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",") if h]
CSRF_TRUSTED_ORIGINS = [
    o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o
]

INSTALLED_APPS = [
    "ocrapp.apps.OcrAdminConfig",  # django.contrib.admin with the audited site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ocrapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ocrapp.urls"
WSGI_APPLICATION = "ocrapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ocrapp.context_processors.review_nav",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("ko", _("Korean"))]
LOCALE_PATHS = [BASE_DIR / "ocrapp" / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"
# Capture images: local files under MEDIA_ROOT (default) or an S3 bucket (IMAGE_STORAGE=s3);
# code reads and writes them through the storage API only, never by filesystem path.
STORAGES = {
    "default": image_storage_from_env(),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Messages stay on the server until shown (the admin's "Issue token" shows a new key in one).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "upload"
LOGOUT_REDIRECT_URL = "login"

# Uploads: bytes and pixels are checked before anything is stored (see services.capture_create).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 25 * 1024 * 1024, minimum=1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=10_000)
MAX_IMAGE_SIDE = env_int("MAX_IMAGE_SIDE", 12_000, minimum=100)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
CAPTURE_WAIT_MAX_SECONDS = 30
# Electronic signatures (review): a browser session gives the password again when its last
# password check is older than this many minutes (0: at every signature; API tokens: always).
SIGNATURE_REAUTH_MINUTES = env_int("SIGNATURE_REAUTH_MINUTES", 15, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # ``Authorization: Token <key>`` (or ``Bearer <key>``), keys stored hashed (ApiToken).
        "ocrapp.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ocrapp.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Serial reader API",
    "DESCRIPTION": "Upload product photos, get serial numbers and key fields back, trace serial history.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # self-hosted assets, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Request bodies get their own components, so that a file field is `format: binary`
    # (multipart upload) rather than the `uri` a response would carry.
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation's error answers and the Error component, in one place (ocrapp/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ocrapp.openapi.document_errors",
    ],
}

# Celery (the app lives in workers/celery.py and reads CELERY_* from here).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Task routes are declared beside the tasks (workers/tasks.py: read_capture -> queue "ocr").
CELERY_TASK_SOFT_TIME_LIMIT = env_int("OCR_SOFT_TIME_LIMIT", 120, minimum=5)
CELERY_TASK_TIME_LIMIT = env_int("OCR_HARD_TIME_LIMIT", 180, minimum=10)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = False
# Each pool child builds and warms its pipeline at start (workers/celery.py); the parent waits
# this long for its "up" message before it gives up on the child (Celery's default is 4 s).
CELERY_WORKER_PROC_ALIVE_TIMEOUT = float(env_int("OCR_WARMUP_TIMEOUT", 300, minimum=4))
OCR_WARMUP = env_bool("OCR_WARMUP", True)

# Capture lifecycle (services.capture_claim / capture_reap, manage.py capture_reaper): a run of
# the reader holds a capture for OCR_LEASE_SECONDS and renews the lease while it reads; the
# reaper, every OCR_REAP_INTERVAL s, sends again a PENDING capture whose message has waited
# longer than OCR_REAP_PENDING_AFTER s (doubling per resend, at most 16x) and a PROCESSING
# capture whose lease expired; a capture claimed OCR_MAX_ATTEMPTS times without finishing is
# quarantined (FAILED, code "quarantined") instead of being read again.
OCR_MAX_ATTEMPTS = env_int("OCR_MAX_ATTEMPTS", 3, minimum=1)
OCR_LEASE_SECONDS = env_int("OCR_LEASE_SECONDS", 30, minimum=3)
OCR_REAP_INTERVAL = env_int("OCR_REAP_INTERVAL", 10, minimum=1)
OCR_REAP_PENDING_AFTER = env_int("OCR_REAP_PENDING_AFTER", 60, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
