"""Typed pipeline errors.

Terminal errors mean "this input will never succeed" (the task fails without retrying);
transient errors mean "retrying later may succeed" (the task retries with backoff).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class TerminalError(PipelineError):
    """Bad input: retrying cannot help. ``code`` is a stable machine-readable slug."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadImageError(TerminalError):
    """The upload is not a usable image.

    Codes: ``bad_image`` (empty, not an image, corrupt or truncated), ``image_too_large``
    (too many pixels or bytes), ``unsupported_format`` (a real image format we do not read).
    """


class ConfigError(PipelineError):
    """The pipeline configuration (environment) is invalid. Fix the deployment, not the input."""


class TransientError(PipelineError):
    """A retryable fault (e.g. CUDA out of memory, a model session that failed to run)."""
