"""DRF parsers that refuse a NUL character anywhere in a request body's values and keys.

PostgreSQL text (and jsonb) cannot hold U+0000: a value carrying one would end as a 500 deep
in a query; here it is a 400 in the JSON error shape before any view sees the data.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions, parsers


def _nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key or string holding a NUL in ``value``, else None."""
    if isinstance(value, str):
        return path or "." if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            found = _nul_path(item, where)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _nul_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def refuse_nul(data: Any) -> None:
    where = _nul_path(data)
    if where is not None:
        field = where.replace("\x00", "\\0")
        # ocrapp.errors renders it: {"code": "invalid", "details": {field: [...]}} (a 400).
        raise exceptions.ValidationError({field: [_("Null characters are not allowed.")]})


def _querydict(data) -> dict:
    return {key: data.getlist(key) for key in data} if hasattr(data, "getlist") else data


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        refuse_nul(data)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        refuse_nul(_querydict(data))
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        refuse_nul(_querydict(parsed.data))
        refuse_nul({key: [f.name or "" for f in parsed.files.getlist(key)] for key in parsed.files})
        return parsed
