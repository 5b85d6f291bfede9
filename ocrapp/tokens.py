"""API token keys: how a key is made, hashed and shown (stdlib only; migrations use it too).

A key is 32 random bytes in URL-safe base64 (43 characters). The database keeps only its
sha256 (``ApiToken.key_hash``) and its first :data:`PREFIX_LENGTH` characters (``prefix``),
which is what the admin and the audit trail show.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX_LENGTH = 8


def new_key() -> str:
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """sha256 (hex) of ``key``: what ``ApiToken.key_hash`` stores and lookups compare."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]
