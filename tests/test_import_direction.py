"""DESIGN.md import direction: the web stays light, the pipeline stays framework-free."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "onnxruntime", "transformers", "cv2"]


def _loaded_after(code: str) -> set[str]:
    probe = (
        f"{code}\nimport sys\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch','onnxruntime','transformers','cv2','django','ocrapp'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={
            "DJANGO_SETTINGS_MODULE": "ocrapp.settings",
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
        },
    )
    return {m for m in out.stdout.strip().split(",") if m}


def test_web_modules_do_not_import_ml_libraries():
    loaded = _loaded_after(
        "import django; django.setup()\n"
        "import ocrapp.urls, ocrapp.api, ocrapp.views, ocrapp.services, ocrapp.selectors\n"
        "import ocrapp.admin, ocrapp.wsgi, workers.tasks, workers.celery\n"
        "import ocrapp.healthcheck, workers.warmup"
    )
    assert "ocrapp" in loaded  # the probe really imported the web modules
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY), loaded


def test_pipeline_does_not_import_django():
    loaded = _loaded_after(
        "import workers.pipeline, workers.pipeline.pipeline, workers.pipeline.loader\n"
        "from workers.pipeline.loader import get_pipeline"
    )
    assert not {m.split(".")[0] for m in loaded} & {"django", "ocrapp"}, loaded
