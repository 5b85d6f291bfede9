#!/usr/bin/env bash
# Fine-tune the text detector (PP-OCRv6-small det, workers/training/det_train.py) on one GPU
# in about 8 minutes; writes to $OUT: det.onnx (fp16 storage, WiSE-FT alpha $ALPHA as the
# committed model) + manifest.json (sha256), log.csv, train.log, metrics.json.
#   bash workers/training/gpu/train_det.sh          (carry: var/gpu-carry/det-pack)
# LR, BATCH, SIZE, ALPHA, MAX_STEPS, SEED_START, EXTRA_ARGS override the recipe.
MODEL=det
source "$(dirname "$0")/common.sh"
say "training det on $DEVICE for at most $MAX_MINUTES min"
train() {
  rm -f "$WORK"/ckpt_*.pt "$WORK"/best.pt "$WORK"/log.csv "$WORK"/val_*.json
  # shellcheck disable=SC2086
  "$PY" -m workers.training.det_train --device "$DEVICE" --max-minutes "$MAX_MINUTES" \
    --max-steps "${MAX_STEPS:-100000}" --batch-size "${BATCH:-16}" --size "${SIZE:-576}" \
    --size-jitter 0.25 --lr "${LR:-2e-4}" --warmup 50 --p-distract 0.6 \
    --seed-start "${SEED_START:-5000000}" --val-samples 32 --val-every 100 --ckpt-every 200 \
    --log-every 20 --threads 4 --out "$WORK" $EXTRA_ARGS $1 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}
train_with_fallback train
export_checkpoint $? workers.training.det_train "$OUT/det.onnx" --alpha "${ALPHA:-0.7}" \
  --storage fp16
