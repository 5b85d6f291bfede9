"""Which PP-OCR detector / recogniser to fine-tune (issue 3): accuracy on hard synthetic
cases vs size vs CPU speed vs CTC training-step time, all model sets measured in one run.

    nice -n 10 .venv/bin/python bench/model_choice.py --samples 16 --seed 9100

Per model set:
- det recall: share of ground-truth text lines (synthetic hard samples, full images through the
  pipeline's ``TextDetector`` + onnxruntime) whose polygon is >= 60 % covered by detected quads.
- rec exact / CER: ground-truth line crops (``line_crops``, degraded like the sample: glare,
  blur, low-res, noise, JPEG) through the pipeline's ``TextRecognizer``; lines with a character
  outside the model's charset (Korean for most) are skipped for that model (count shown).
- det s / rec s: median seconds for one image (long side 960) / one batch of 8 crops.
- CTC step: torch (converted, head resized to the 81-char serial charset), batch 8 x 48 x 320,
  forward + backward + AdamW step, median of 3 after one warm-up.
- sizes: shipped ONNX MB; rec with the 81-char head (state_dict MB).
"""

from __future__ import annotations

import argparse
import io
import statistics
import string
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.pipeline.config import PipelineConfig  # noqa: E402
from workers.pipeline.detection import TextDetector  # noqa: E402
from workers.pipeline.models import MODEL_SETS, create_session, load_char_list  # noqa: E402
from workers.pipeline.recognition import TextRecognizer  # noqa: E402
from workers.training.metrics import cer  # noqa: E402

SETS = ["ppocrv4", "ppocrv5", "ppocrv6_small", "ppocrv6_tiny"]
HARD = [
    {"glare"},
    {"glare", "perspective"},
    {"curved"},
    {"dot_matrix"},
    {"engraved", "glare"},
    {"segment"},
    {"perspective", "blur"},
    {"low_res"},
]
SERIAL_CHARSET = list(string.ascii_uppercase + string.ascii_lowercase + string.digits + "-/.:#_ ")


def coverage(gt: np.ndarray, quads: list[np.ndarray], shape: tuple[int, int]) -> float:
    import cv2

    m_gt = np.zeros(shape, np.uint8)
    cv2.fillPoly(m_gt, [np.round(gt).astype(np.int32)], 1)
    m_det = np.zeros(shape, np.uint8)
    for q in quads:
        cv2.fillPoly(m_det, [np.round(q).astype(np.int32)], 1)
    return float((m_gt & m_det).sum()) / max(int(m_gt.sum()), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=9100)
    ap.add_argument("--no-train", action="store_true")
    args = ap.parse_args()

    from workers.training.synth import generate_sample, line_crops

    samples = [
        generate_sample(args.seed + i, conditions=HARD[i % len(HARD)]) for i in range(args.samples)
    ]
    crops = [c for s in samples for c in line_crops(s)]
    cfg = PipelineConfig(threads=2)
    rows = []
    for name in SETS:
        ms = MODEL_SETS[name]
        det_sess, _ = create_session(ms.det.path(), "cpu", 2)
        rec_sess, _ = create_session(ms.rec.path(), "cpu", 2)
        det = TextDetector(cfg, det_sess, mean=ms.det_mean, std=ms.det_std)
        chars = load_char_list(ms, rec_sess)
        rec = TextRecognizer(cfg, rec_sess, chars)
        charset = set(chars) | {" "}
        # detection
        hits, total, det_t = 0, 0, []
        for s in samples:
            t0 = time.perf_counter()
            boxes = det(s.image)
            det_t.append(time.perf_counter() - t0)
            quads = [np.array(b.polygon, np.float32) for b in boxes]
            for ln in s.lines:
                total += 1
                hits += coverage(ln.polygon, quads, s.image.shape[:2]) >= 0.6
        # recognition
        usable = [c for c in crops if set(c.text) <= charset]
        rec_t, exact, cers = [], 0, []
        for i in range(0, len(usable), 8):
            chunk = usable[i : i + 8]
            t0 = time.perf_counter()
            out = rec([c.image for c in chunk])
            rec_t.append(time.perf_counter() - t0)
            for c, r in zip(chunk, out, strict=True):
                exact += r.text.strip() == c.text.strip()
                cers.append(cer(r.text.strip(), c.text.strip()))
        row = {
            "set": name,
            "det_MB": ms.det.path().stat().st_size / 1e6,
            "rec_MB": ms.rec.path().stat().st_size / 1e6,
            "det_recall": hits / max(total, 1),
            "rec_exact": exact / max(len(usable), 1),
            "rec_cer": float(np.mean(cers)) if cers else float("nan"),
            "lines": f"{len(usable)}/{len(crops)}",
            "det_s": statistics.median(det_t),
            "rec_s": statistics.median(rec_t),
        }
        if not args.no_train:
            row.update(train_numbers(name))
        rows.append(row)
        print(row, flush=True)
    base = next(r for r in rows if r["set"] == "ppocrv4")
    print()
    head = "| set | det MB | rec MB | rec81 MB | det recall | rec exact | rec CER | lines | det s (x v4) | rec s/8 (x v4) | CTC step s (x v4) |"
    print(head)
    print("|---" * 11 + "|")
    for r in rows:
        print(
            f"| {r['set']} | {r['det_MB']:.1f} | {r['rec_MB']:.1f} | {r.get('rec81_MB', float('nan')):.1f} "
            f"| {r['det_recall']:.2f} | {r['rec_exact']:.2f} | {r['rec_cer']:.3f} | {r['lines']} "
            f"| {r['det_s']:.3f} ({r['det_s'] / base['det_s']:.2f}) "
            f"| {r['rec_s']:.3f} ({r['rec_s'] / base['rec_s']:.2f}) "
            f"| {r.get('ctc_s', float('nan')):.2f} ({r.get('ctc_s', float('nan')) / base.get('ctc_s', float('nan')):.2f}) |"
        )


def train_numbers(name: str) -> dict[str, float]:
    import torch

    from workers.training.convert import build

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = build(name, "rec", charset=SERIAL_CHARSET)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    ctc = torch.nn.CTCLoss(zero_infinity=True)
    x = torch.randn(8, 3, 48, 320)
    tgt = torch.randint(1, len(SERIAL_CHARSET) + 1, (8, 12))
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        lp = net.logits(x).log_softmax(-1).permute(1, 0, 2)
        loss = ctc(lp, tgt, torch.full((8,), lp.shape[0]), torch.full((8,), 12))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"ctc_s": statistics.median(times[1:]), "rec81_MB": buf.tell() / 1e6}


if __name__ == "__main__":
    main()
