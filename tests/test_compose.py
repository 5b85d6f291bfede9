"""docker-compose.yml stays consistent (no Docker engine here to run it): web and worker keep
images in the MinIO bucket that the one-shot minio-init creates, and share no media volume."""

import re
from pathlib import Path

import yaml

from ocrapp.config import image_storage_from_env

ROOT = Path(__file__).resolve().parent.parent


def _resolved(env: dict) -> dict[str, str]:
    """Compose's ${VAR:-default} with VAR unset."""
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def test_web_and_worker_use_the_minio_bucket_and_share_no_volume():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    minio_env = _resolved(services["minio"]["environment"])
    init = services["minio-init"]
    assert services["minio"]["image"].startswith("minio/minio")
    assert init["image"].startswith("minio/mc")
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("migrate", "web", "worker"):
        service = services[name]
        env = _resolved(service["environment"])
        assert "volumes" not in service and "MEDIA_ROOT" not in env, name
        opts = image_storage_from_env(env)["OPTIONS"]
        assert opts["endpoint_url"] == "http://minio:9000", name
        assert opts["addressing_style"] == "path", name
        assert (opts["access_key"], opts["secret_key"]) == (
            minio_env["MINIO_ROOT_USER"],
            minio_env["MINIO_ROOT_PASSWORD"],
        ), name
        assert f"mc mb --ignore-existing local/{opts['bucket_name']}" in init["command"][0], name
        assert f"mc anonymous set none local/{opts['bucket_name']}" in init["command"][0], name
    assert services["migrate"]["depends_on"]["minio-init"] == {
        "condition": "service_completed_successfully"
    }
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used == set(compose["volumes"]) and "media" not in used
