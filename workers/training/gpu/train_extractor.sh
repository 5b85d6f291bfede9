#!/usr/bin/env bash
# Continue training the field extractor (layout MiniLM, workers/training/extractor/train.py)
# on one GPU in about 8 minutes, from the committed weights (the full base model does not fit
# the 64 MiB transfer: the carry holds only its frozen word-piece table, see carry.py).
# Writes to $OUT: extractor.safetensors.part0, .part1 (fp16, split under the 16 MiB file
# limit; join with `cat extractor.safetensors.part* > extractor.safetensors` and check the
# sha256 in manifest.json), manifest.json, train_result.json, train.log, metrics.json.
#   bash workers/training/gpu/train_extractor.sh    (carry: var/gpu-carry/extractor-pack)
# EXTRACTOR_INIT, N_SYNTH, LR, BATCH_TOKENS, MAX_STEPS, EXTRA_ARGS override the recipe.
MODEL=extractor
source "$(dirname "$0")/common.sh"
SROIE="$WORK/sroie_labels.json"
if [ -f "$CARRY/extractor/sroie_labels.json.gz" ]; then
  gunzip -c "$CARRY/extractor/sroie_labels.json.gz" >"$SROIE"
else
  say "note: no SROIE labels carried: synthetic nameplates only"
  echo "[]" >"$SROIE"
fi
say "training extractor on $DEVICE for at most $MAX_MINUTES min"
train() {
  rm -rf "$WORK/run" "$WORK/export"
  # shellcheck disable=SC2086
  "$PY" -m workers.training.extractor.train --device "$DEVICE" --max-minutes "$MAX_MINUTES" \
    --max-steps "${MAX_STEPS:-4000}" --init-from "${EXTRACTOR_INIT:-workers/models/extractor}" \
    --sroie "$SROIE" --n-synth "${N_SYNTH:-8000}" --no-cache --lr "${LR:-6e-5}" --head-lr 5e-4 \
    --warmup 0.03 --batch-tokens "${BATCH_TOKENS:-16384}" --val-every 200 --n-val-synth 300 \
    --save-every 500 --log-every 50 --threads 4 --out "$WORK/run" --export "$WORK/export" \
    $EXTRA_ARGS $1 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}
train_with_fallback train
rc=$?
if [ -f "$WORK/export/extractor.safetensors" ]; then
  split -b 15M -d -a 1 "$WORK/export/extractor.safetensors" "$OUT/extractor.safetensors.part"
  cp "$WORK/export/manifest.json" "$OUT/manifest.json"
fi
[ -f "$WORK/run/train_result.json" ] && cp "$WORK/run/train_result.json" "$OUT/"
[ "$rc" = 0 ] || say "training failed (rc $rc)"
finish
exit "$rc"
