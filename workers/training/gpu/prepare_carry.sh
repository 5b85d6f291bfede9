#!/usr/bin/env bash
# Run HERE (the CPU machine), from the repository root, before a device call: writes
# var/gpu-carry/<model>-pack for rec, det and extractor (fonts subset, base weights, wheels,
# data; see workers/training/gpu/carry.py) and prints the sizes against the transfer limits
# (fails when a carry > 60 MiB or tree + carry > 64 MiB, naming the largest files).
#   bash workers/training/gpu/prepare_carry.sh [--dry-run] [--models rec,det,extractor]
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" -m workers.training.gpu.carry "$@"
