"""The ASGI application as the server should serve it (Django wrapped in ASGIBodyLimit), for
the real-uvicorn test in tests/ocrapp/test_body_limits.py (the project's asgi.py does the same)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
django_application = get_asgi_application()

from ocrapp.limits import ASGIBodyLimit  # noqa: E402

application = ASGIBodyLimit(django_application)
