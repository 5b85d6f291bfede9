"""IMAGE_STORAGE picks where capture images live; a bad value stops the process at start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from ocrapp.config import image_storage_from_env

ROOT = Path(__file__).resolve().parents[2]
S3 = {
    "IMAGE_STORAGE": "s3",
    "S3_BUCKET": "captures",
    "S3_ENDPOINT_URL": "http://minio:9000",
    "S3_REGION": "eu-central-1",
    "S3_ACCESS_KEY_ID": "key",
    "S3_SECRET_ACCESS_KEY": "secret",
    "S3_ADDRESSING_STYLE": "path",
}


def test_local_files_by_default():
    for env in ({}, {"IMAGE_STORAGE": ""}, {"IMAGE_STORAGE": "local"}):
        assert image_storage_from_env(env) == {
            "BACKEND": "django.core.files.storage.FileSystemStorage"
        }


def test_s3_from_environment_is_private_signed_and_never_overwrites():
    entry = image_storage_from_env(S3)
    assert entry["BACKEND"] == "storages.backends.s3.S3Storage"
    opts = entry["OPTIONS"]
    assert opts["bucket_name"] == "captures"
    assert opts["endpoint_url"] == "http://minio:9000"
    assert opts["region_name"] == "eu-central-1"
    assert (opts["access_key"], opts["secret_key"]) == ("key", "secret")
    assert opts["addressing_style"] == "path"
    assert opts["default_acl"] is None  # no public-read
    assert opts["querystring_auth"] is True
    assert opts["file_overwrite"] is False


def test_s3_storage_accepts_the_options_and_signs_urls():
    from storages.backends.s3 import S3Storage

    storage = S3Storage(**image_storage_from_env(S3)["OPTIONS"])
    url = storage.url("captures/2026/01/x.png")
    assert url.startswith("http://minio:9000/captures/captures/2026/01/x.png?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=" in url


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE_STORAGE": "gcs"}, "IMAGE_STORAGE must be one of local, s3, got 'gcs'"),
        ({"IMAGE_STORAGE": "s3"}, "IMAGE_STORAGE=s3 needs S3_BUCKET"),
        ({**S3, "S3_BUCKET": " "}, "IMAGE_STORAGE=s3 needs S3_BUCKET"),
        ({**S3, "S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL must be an http"),
        ({**S3, "S3_ADDRESSING_STYLE": "dns"}, "S3_ADDRESSING_STYLE must be one of"),
        ({**S3, "S3_SECRET_ACCESS_KEY": ""}, "must be set together"),
    ],
)
def test_bad_storage_settings_are_refused(env, message):
    with pytest.raises(ImproperlyConfigured) as err:
        image_storage_from_env(env)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE_STORAGE": "ftp"}, "IMAGE_STORAGE must be one of local, s3"),
        ({"IMAGE_STORAGE": "s3"}, "IMAGE_STORAGE=s3 needs S3_BUCKET"),
    ],
)
def test_the_app_refuses_to_start_with_bad_storage_settings(env, message):
    probe = "import django; django.setup()"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_STORAGE", "S3_"))}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean, "DJANGO_SETTINGS_MODULE": "ocrapp.settings", **env},
    )
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr and message in out.stderr
