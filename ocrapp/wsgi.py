"""WSGI entry point (gunicorn ocrapp.wsgi).

``limit_wsgi_body`` reads a chunked body (no Content-Length) at most to MAX_REQUEST_BYTES
(ocrapp/limits.py); gunicorn's own limits must be looser than the application's: run it with
``--limit-request-line 16384 --limit-request-field_size 16384 --limit-request-fields 200``.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
application = get_wsgi_application()

from ocrapp.limits import limit_wsgi_body  # noqa: E402  (settings are configured now)

application = limit_wsgi_body(application)
