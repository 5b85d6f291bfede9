"""ASGI entry point: the web server (``uvicorn ocrapp.asgi:application``, see devstack and the
Dockerfile). Every view is sync except ``api.capture_detail``, whose ``?wait=`` holds no thread
while it waits (``ocrapp.waiting``); Django runs the sync ones in a thread per request."""

import os

# Under ASGI a request's database connection lives in that request's own thread: close it at
# the end of the request instead of keeping it for a thread that will not come back.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

from ocrapp.limits import ASGIBodyLimit  # noqa: E402

# uvicorn has no body limit and Django's ASGI handler reads the whole body before any
# middleware: the wrapper stops reading at MAX_REQUEST_BYTES (ocrapp/limits.py).
application = ASGIBodyLimit(get_asgi_application())
