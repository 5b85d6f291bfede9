"""docker-compose.yml, the Dockerfile and .dockerignore stay consistent (static checks: no
Docker engine is needed; the build smoke test at the end runs only where one answers).

Web and worker keep images in the MinIO bucket that the one-shot minio-init creates and share
no media volume; every long-running app service has a healthcheck and a restart policy; the GPU
worker runs the gpu image with a reserved NVIDIA GPU and OCR_DEVICE=cuda; secrets have no
defaults; nothing seeds demo users; the images run as a non-root user without test packages."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ocrapp.config import image_storage_from_env

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
# long-running, built from this repo
APP_SERVICES = ("web", "worker", "worker-cpu", "webhooks", "reaper")
TEST_ENV = {
    "DJANGO_SECRET_KEY": "k" * 50,
    "DJANGO_ALLOWED_HOSTS": "serial.example.com",
    "PUBLIC_BASE_URL": "https://serial.example.com",
    "POSTGRES_PASSWORD": "pg-secret",
    "MINIO_ROOT_USER": "minio-user",
    "MINIO_ROOT_PASSWORD": "minio-secret",
}


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    out = re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:[-?])([^}]*))?\}", one, value)
    return out.replace("$$", "$")


def _resolved(env: dict, with_env: dict[str, str] = TEST_ENV) -> dict[str, str]:
    return {k: interpolate(str(v), with_env) for k, v in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_web_and_worker_use_the_minio_bucket_and_share_no_volume(compose, services):
    minio_env = _resolved(services["minio"]["environment"])
    init = services["minio-init"]
    assert services["minio"]["image"].startswith("minio/minio")
    assert init["image"].startswith("minio/mc")
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("migrate", *APP_SERVICES):
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


def test_app_services_have_healthchecks_and_restart_policies(services):
    subcommand = {
        "web": "web",
        "worker": "worker",
        "worker-cpu": "worker",
        "webhooks": "webhooks",
        "reaper": "reaper",
    }
    for name in APP_SERVICES:
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "ocrapp.healthcheck"], name
        assert test[4] == subcommand[name], name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # the reaper's healthcheck reads the heartbeat file its command writes
    reaper = services["reaper"]
    beat = reaper["command"][reaper["command"].index("--heartbeat") + 1]
    assert reaper["healthcheck"]["test"][-2:] == ["--heartbeat", beat]
    for name in ("postgres", "redis", "minio"):
        assert services[name]["restart"] == "unless-stopped" and services[name]["healthcheck"]
    for name in ("migrate", "minio-init"):  # one-shots
        assert services[name]["restart"] == "no"


def test_gpu_worker_runs_the_gpu_image_on_a_reserved_gpu_and_the_cpu_worker_is_a_profile(
    services,
):
    gpu, cpu = services["worker"], services["worker-cpu"]
    assert gpu["build"]["target"] == "gpu" and "profiles" not in gpu
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["environment"]["OCR_DEVICE"] == "cuda"  # refuses to start without CUDA
    assert cpu["build"]["target"] == "cpu" and cpu["profiles"] == ["cpu"]
    assert cpu["environment"]["OCR_DEVICE"] == "cpu" and "deploy" not in cpu
    assert gpu["command"] == cpu["command"]
    assert gpu["command"][:5] == ["celery", "-A", "workers.celery", "worker", "-Q"]
    # the healthcheck's default node name (ocr@<hostname>) is the one the command gives
    assert gpu["command"][gpu["command"].index("-n") + 1] == "ocr@%h"
    # webhook deliveries: their own light worker on the queue "webhooks", never the OCR one
    hooks = services["webhooks"]["command"]
    assert hooks[hooks.index("-Q") + 1] == "webhooks" and "webhooks" not in gpu["command"]
    assert hooks[hooks.index("--pool") + 1] == "threads"
    assert services["webhooks"]["environment"]["OCR_WARMUP"] == "0"
    for name in ("web", "migrate", "webhooks", "reaper"):
        assert services[name]["build"]["target"] == "cpu", name
        assert "deploy" not in services[name], name


def test_no_placeholder_secrets_no_demo_seeding_and_production_settings(services):
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text and "seed_demo" not in text
    for var in SECRETS + ("DJANGO_ALLOWED_HOSTS", "PUBLIC_BASE_URL"):
        uses = re.findall(r"\$\{" + var + r"(:?[-?]?)[^}]*\}", text)
        assert uses and set(uses) == {":?"}, (var, uses)  # required, never a default
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("SECRET", "PASSWORD", "ACCESS_KEY")):
                assert str(value).startswith("${") and ":?" in str(value), (name, key)
        for var in SECRETS:  # with the variable unset, compose refuses to start
            env = {k: v for k, v in TEST_ENV.items() if k != var}
            if any(var in str(v) for v in (service.get("environment") or {}).values()):
                with pytest.raises(MissingVariable):
                    _resolved(service["environment"], env)
        command = service.get("command") or []
        assert "createsuperuser" not in " ".join(map(str, command)), name
    for name in ("migrate", *APP_SERVICES):
        env = _resolved(services[name]["environment"])
        assert env["DJANGO_ENV"] == "production", name
        assert env["DJANGO_SECRET_KEY"] == TEST_ENV["DJANGO_SECRET_KEY"], name
        assert env["DATABASE_URL"] == "postgresql://serialread:pg-secret@postgres:5432/serialread"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


# ---- Dockerfile ---------------------------------------------------------------------------


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (keyword, rest), continuation lines joined; the ARGs
    before the first FROM are under ""."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            stages[current] = [("FROM", rest.split(" AS ")[0].strip())]
        else:
            stages[current].append((keyword.upper(), rest.strip()))
    return stages


def _chain(stages: dict, name: str) -> list[tuple[str, str]]:
    """A stage's instructions with those of the stages it is built FROM, base first."""
    base = stages[name][0][1]
    return (_chain(stages, base) if base in stages else [("FROM", base)]) + stages[name][1:]


def _args(stages) -> dict[str, str]:
    return dict(rest.split("=", 1) for kw, rest in stages[""] if kw == "ARG")


def test_dockerfile_targets_run_as_non_root_with_a_healthcheck():
    stages = _stages()
    assert list(stages)[-1] == "cpu"  # a plain `docker build .` gives the CPU image
    for target in ("cpu", "gpu"):
        chain = _chain(stages, target)
        users = [rest for kw, rest in chain if kw == "USER"]
        assert users and users[-1] not in ("root", "0"), target
        user_at = max(i for i, (kw, _) in enumerate(chain) if kw == "USER")
        cmd_at = max(i for i, (kw, _) in enumerate(chain) if kw == "CMD")
        assert user_at < cmd_at, target  # the command runs as that user
        assert any(kw == "HEALTHCHECK" for kw, _ in chain), target
        env = " ".join(rest for kw, rest in chain if kw == "ENV")
        assert "DJANGO_ENV=production" in env, target
        runs = " ".join(rest for kw, rest in chain if kw == "RUN")
        # runtime requirements only: never the dev or devstack lists, never a test package
        assert "pip install -r /tmp/requirements.txt" in runs, target
        assert "requirements-dev" not in runs and "requirements-devstack" not in runs, target
        assert not re.search(r"pip install[^&]*\b(pytest|playwright|moto|ruff)\b", runs), target
    cpu = _chain(_stages(), "cpu")
    assert any("collectstatic" in rest for kw, rest in cpu if kw == "RUN")
    healthchecks = [rest for kw, rest in cpu if kw == "HEALTHCHECK"]
    assert '"ocrapp.healthcheck", "web"' in healthchecks[-1]
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("# WEB SERVER") == 1  # the one CMD line the web-server switch changes


def test_gpu_target_installs_onnxruntime_gpu_on_a_cuda_base_instead_of_onnxruntime():
    stages = _stages()
    args = _args(stages)
    chain = _chain(stages, "gpu")
    base = chain[0][1]
    assert base == "${CUDA_IMAGE}"
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", args[base[2:-1]])
    runs = " && ".join(rest for kw, rest in chain if kw == "RUN")
    pins = {
        line.split("==")[0]: line.split("==")[1]
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    # onnxruntime-gpu of the same version as the CPU pin, installed after the CPU one is removed
    uninstall = runs.index("pip uninstall -y onnxruntime")
    install = runs.index(f"pip install --no-deps onnxruntime-gpu=={pins['onnxruntime']}")
    assert runs.index("pip install -r /tmp/requirements.txt") < uninstall < install
    assert "'CUDAExecutionProvider' in p" in runs  # the build fails without the CUDA provider
    assert any(kw == "ENV" and "OCR_DEVICE=cuda" in rest for kw, rest in chain)
    # the CPU image never carries onnxruntime-gpu
    cpu_runs = " ".join(rest for kw, rest in _chain(stages, "cpu") if kw == "RUN")
    assert "pip install --no-deps onnxruntime-gpu" not in cpu_runs
    assert "download.pytorch.org/whl/cpu torch==" in cpu_runs and "whl/cpu torch==" in runs


# ---- .dockerignore --------------------------------------------------------------------------


def _ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_re(pattern: str) -> re.Pattern:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it decides;
    ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = _pattern_re(raw.lstrip("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_local_state_out_and_the_shipped_weights_in():
    patterns = _ignore_patterns()
    for path in (
        ".venv/bin/python",
        "var/test/pgdata/PG_VERSION",
        "var/cache/extractor-onnx/x.onnx",
        ".git/HEAD",
        "ocrapp/__pycache__/models.cpython-311.pyc",
        "tests/test_compose.py",
        "bench/faults.py",
        "node_modules/x/index.js",
        "scratch/converted.onnx",
        ".env",
    ):
        assert dockerignored(path, patterns), path
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    needed = [
        p
        for p in tracked
        if p.startswith(("ocrapp/", "workers/", "templates/"))
        or p in ("manage.py", "requirements.txt")
    ]
    weights = [p for p in needed if p.startswith("workers/models/")]
    assert any(p.endswith(".onnx") for p in weights) and any(
        p.endswith(".safetensors") for p in weights
    )
    assert [p for p in needed if dockerignored(p, patterns)] == []


# ---- build smoke test (only where a Docker engine answers) ------------------------------------


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers here")
def test_cpu_image_builds_runs_as_non_root_and_carries_no_test_package():
    tag = "serialread-test:cpu"
    subprocess.run(
        ["docker", "build", "--target", "cpu", "-t", tag, str(ROOT)], check=True, timeout=3600
    )
    probe = (
        "import importlib.util as u, os; "
        "print(os.getuid(), [m for m in ('pytest', 'playwright', 'moto', 'hypothesis') "
        "if u.find_spec(m)])"
    )
    out = subprocess.run(
        ["docker", "run", "--rm", tag, "python", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.strip()
    uid, missing = out.split(" ", 1)
    assert uid != "0" and missing == "[]"
