"""ASGI entry point: the web server (``uvicorn ocrapp.asgi:application``, see devstack and the
Dockerfile). Every view is sync except ``api.capture_detail``, whose ``?wait=`` holds no thread
while it waits (``ocrapp.waiting``); Django runs the sync ones in a thread per request."""

import os

# Under ASGI every request runs in a thread of its own: connections come from a pool per
# process (ocrapp/config.py) instead of one new connection per request.
os.environ.setdefault("DB_POOL_SIZE", "20")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

from ocrapp.limits import ASGIBodyLimit  # noqa: E402

# uvicorn has no body limit and Django's ASGI handler reads the whole body before any
# middleware: the wrapper stops reading at MAX_REQUEST_BYTES (ocrapp/limits.py).
application = ASGIBodyLimit(get_asgi_application())
