"""The ASGI application as the server serves it, for the real-uvicorn test in
tests/ocrapp/test_body_limits.py: the project's own ``ocrapp.asgi`` (Django wrapped in
ASGIBodyLimit)."""

from ocrapp.asgi import application  # noqa: F401
