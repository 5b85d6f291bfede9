#!/usr/bin/env bash
# Fine-tune the recogniser (PP-OCRv6-small rec, workers/training/rec_train.py) on one GPU in
# about 8 minutes; writes to $OUT: rec.onnx (fp16 storage) + manifest.json (sha256),
# log.csv, val_best.json, train.log, metrics.json. From the repository root:
#   bash workers/training/gpu/train_rec.sh          (carry: var/gpu-carry/rec-pack)
# REC_INIT=workers/models/rec_ours/rec.onnx continues from the committed weights instead of
# the shipped base; LR, BATCH, MAX_STEPS, SEED_START, EXTRA_ARGS override the recipe.
MODEL=rec
source "$(dirname "$0")/common.sh"
say "training rec on $DEVICE for at most $MAX_MINUTES min"
train() {
  rm -f "$WORK"/ckpt_*.pt "$WORK"/best.pt "$WORK"/log.csv "$WORK"/val_*.json
  # shellcheck disable=SC2086
  "$PY" -m workers.training.rec_train --device "$DEVICE" --max-minutes "$MAX_MINUTES" \
    --max-steps "${MAX_STEPS:-100000}" --arch v6_small ${REC_INIT:+--init "$REC_INIT"} \
    --batch-size "${BATCH:-128}" --lr "${LR:-1e-4}" --head-lr-mult 10 --warmup 100 \
    --samples-per-step 4 --pool-size 20000 --pool-min 2000 --p-engraved 0.3 \
    --seed-start "${SEED_START:-200000}" --val-samples 60 --val-every 250 --ckpt-every 500 \
    --log-every 50 --threads 4 --out "$WORK" $EXTRA_ARGS $1 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}
train_with_fallback train
export_checkpoint $? workers.training.rec_train "$OUT/rec.onnx" --storage fp16
