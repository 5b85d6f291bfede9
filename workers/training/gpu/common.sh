# Sourced by train_rec.sh / train_det.sh / train_extractor.sh (MODEL set before): unpack the
# carried pack, install the carried wheels, point the synthetic engine at the carried fonts,
# check the environment (every missing thing named at once), and define say/finish and
# export_checkpoint.
# Runs on the device machine from the repository root; imports no Django / ocrapp.
#
# Environment (all optional except OUT):
#   OUT          output folder (the device tool sets it); at most 8 flat files are written
#   PYTHON       interpreter (python3)
#   GPU_CARRY    the carried pack (var/gpu-carry/$MODEL-pack: *.tar.xz), or an unpacked carry
#                folder holding fonts/ and $MODEL/
#   GPU_UNPACK   where packs are unpacked (/tmp/gpu-carry)
#   GPU_WORK     scratch for checkpoints (/tmp/gpu-train/$MODEL)
#   MAX_MINUTES  training budget in minutes (7; export and checks add ~1)
#   DEVICE       trainer --device (cuda); GPU_ALLOW_CPU=1 lets the check pass without a GPU
#   EXTRA_ARGS   appended to the trainer's arguments (a later flag wins)
#   GPU_SKIP_WHEELS=1  do not pip-install the carried wheels (CPU tests, where they exist)
set -uo pipefail
PY=${PYTHON:-python3}
if [ -z "${OUT:-}" ]; then
  echo "MISSING OUT: set OUT to the output folder (the device tool sets it)" >&2
  exit 3
fi
PACK=${GPU_CARRY:-var/gpu-carry/$MODEL-pack}
UNPACK=${GPU_UNPACK:-/tmp/gpu-carry}
WORK=${GPU_WORK:-/tmp/gpu-train/$MODEL}
MAX_MINUTES=${MAX_MINUTES:-7}
DEVICE=${DEVICE:-cuda}
EXTRA_ARGS=${EXTRA_ARGS:-}
T0=$(date +%s)
mkdir -p "$OUT" "$WORK"
LOG="$OUT/train.log"
: >"$LOG"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
# train_with_fallback FUNC: run FUNC "" (the recipe); if it fails within 150 s of the start
# (e.g. an op without bf16 support on this GPU), run FUNC "--amp off" once in the time left,
# so that one device call still yields weights.
train_with_fallback() {
  local fn=$1 rc
  "$fn" ""
  rc=$?
  if [ "$rc" != 0 ] && [ $(($(date +%s) - T0)) -lt 150 ]; then
    say "training failed early (rc $rc): retrying once in fp32 (--amp off)"
    MAX_MINUTES=$(awk -v m="$MAX_MINUTES" -v e="$(($(date +%s) - T0))" 'BEGIN{printf "%.1f", m - e / 60}')
    "$fn" "--amp off"
    rc=$?
  fi
  return "$rc"
}
finish() {
  "$PY" -m workers.training.gpu.run finish --model "$MODEL" --work "$WORK" --out "$OUT" \
    --wall "$(($(date +%s) - T0))" 2>&1 | tee -a "$LOG"
}
# export_checkpoint RC MODULE ONNX ARGS...: after training that ended with RC, export the best
# checkpoint of $WORK (else the newest) by `$PY -m MODULE --export CK --onnx ONNX ARGS...`,
# copy log.csv to $OUT, write the metrics (finish) and exit with the export's status
# (RC if training failed, 4 if it left no checkpoint).
export_checkpoint() {
  local rc=$1 module=$2 onnx=$3 ck
  shift 3
  if [ "$rc" != 0 ]; then say "training failed (rc $rc)"; finish; exit "$rc"; fi
  ck="$WORK/best.pt"
  [ -f "$ck" ] || ck=$(ls "$WORK"/ckpt_*.pt 2>/dev/null | sort | tail -1)
  if [ -z "$ck" ]; then say "no checkpoint was written (budget too small?)"; finish; exit 4; fi
  say "export $ck ($*)"
  "$PY" -m "$module" --export "$ck" --onnx "$onnx" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  cp "$WORK/log.csv" "$OUT/log.csv"
  finish
  exit "$rc"
}

say "gpu/$MODEL: repo $(pwd), carry $PACK, out $OUT, budget ${MAX_MINUTES} min"
if [ -d "$PACK" ] && ls "$PACK"/*.tar.xz >/dev/null 2>&1; then
  mkdir -p "$UNPACK"
  for a in "$PACK"/*.tar.xz; do
    tar -xJf "$a" -C "$UNPACK" || { say "MISSING: cannot unpack $a"; exit 3; }
  done
  CARRY=$UNPACK
elif [ -d "$PACK" ]; then
  CARRY=$PACK
else
  say "MISSING carry folder $PACK: run 'bash workers/training/gpu/prepare_carry.sh' on the CPU machine and name var/gpu-carry/$MODEL-pack in the run call's carry"
  exit 3
fi
CARRY=$(cd "$CARRY" && pwd)
if [ -z "${GPU_SKIP_WHEELS:-}" ] && ls "$CARRY/$MODEL/whl/"*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$CARRY/$MODEL/whl/"*.whl >>"$LOG" 2>&1 ||
    { say "MISSING: pip could not install the carried wheels $CARRY/$MODEL/whl"; exit 3; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$(pwd):$CARRY/$MODEL${PYTHONPATH:+:$PYTHONPATH}"
export SYNTH_FONT_DIRS="$CARRY/fonts" SYNTH_FONT_ONLY=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$PY" -m workers.training.gpu.run check --model "$MODEL" --carry "$CARRY" \
  ${GPU_ALLOW_CPU:+--allow-cpu} 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || exit 3
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$LOG" 2>&1 || true
fi
