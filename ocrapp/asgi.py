"""ASGI entry point: the web server (``uvicorn ocrapp.asgi:application``, see devstack and the
Dockerfile). Every view is sync except ``api.capture_detail``, whose ``?wait=`` holds no thread
while it waits (``ocrapp.waiting``); Django runs the sync ones in a thread per request."""

import os

# Under ASGI a request's database connection lives in that request's own thread: close it at
# the end of the request instead of keeping it for a thread that will not come back.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
