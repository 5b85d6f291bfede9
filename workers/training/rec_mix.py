"""Weight-space mixing (WiSE-FT, Wortsman et al. 2022) of our fine-tuned recogniser with its base
model, over a WIDER head than the fine-tuned one (issue 10, point 3).

The fine-tuned ``rec_ours`` (PP-OCRv6-small rec, 161 classes) forgot some of how to read real
photos; its base (the shipped PP-OCRv6-small rec, 18 710 classes) did not learn our conditions.
Both share one graph (``convert.prepare_onnx``: the same initializer names), so every body
tensor, BatchNorm running statistics included, is mixed:

    theta = alpha * ours + (1 - alpha) * base

Head (the last MatMul (D, C) + Add (C,)) over :func:`wide_charset` (ours + the base's
printable ASCII, Latin-1, Latin Extended-A, currency/unit symbols and the CJK characters of
Japanese/Chinese label keywords): a class both models have gets the mixed column, a base-only
class the base column (it reads a mixed feature space: measured, not assumed), a class only
ours has (Hangul) our column. The blank is mixed.

    PYTHONPATH=. .venv/bin/python -m workers.training.rec_mix --alpha 0.5 \
        --onnx var/mix/rec_a0.5.onnx

writes the ONNX of the shipped contract (``convert.export_onnx``, fp16 storage, charset in the
``character`` metadata), loadable by the pipeline (``OCR_MODEL=ours`` reads the charset from the
file) and by ``convert.load_exported`` for further fine-tuning.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

OURS = Path("workers/models/rec_ours/rec.onnx")

# CJK characters of Japanese / Chinese label keywords (serial, model, lot, dates, ratings,
# maker, origin); every one is in the base dictionary.
CJK_KEYWORDS = (
    "制造製造番号序列号型号シリアル製品品番生产日期批号ロット製造年月日型式定格电压電圧电流電流"
    "功率消費電力頻率频率产地産地原産国中国日本韓国制造商製造元厂商メーカー社名有限公司株式会社"
    "品名名称型番机号機番号編號编号批次批號ナンバー生産保証期限有効使用出荷重量净重質量容量寸法"
    "尺寸材質材料输入输出入力出力周波数电源電源交流直流注意警告合格检验検査產品序號製號番號"
)
SYMBOLS = "$£€¥%\"'°µΩ±‰×÷·™®©§"


def _ours_charset(path: Path = OURS) -> list[str]:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return [*meta["character"].splitlines(), " "]


def wide_charset(ours: list[str] | None = None, base: list[str] | None = None) -> list[str]:
    """Our classes (order kept) + printable ASCII, Latin-1 letters and signs, Latin
    Extended-A, ``SYMBOLS`` and ``CJK_KEYWORDS`` that the base dictionary has; space last."""
    from workers.training.convert import shipped_charset

    ours = ours if ours is not None else _ours_charset()
    base_set = set(base if base is not None else shipped_charset("ppocrv6_small"))
    extra = [chr(c) for c in range(0x21, 0x7F)]
    extra += [chr(c) for c in range(0xA1, 0x180) if c not in (0xAD,)]
    extra += list(SYMBOLS) + list(CJK_KEYWORDS)
    out = [c for c in ours if c != " "]
    seen = set(out)
    for c in extra:
        if c not in seen and c in base_set:
            out.append(c)
            seen.add(c)
    return [*out, " "]


def _arrays(proto: Any) -> dict[str, np.ndarray]:
    """Initializer name -> float32 array (fp16-stored kernels cast back, suffix dropped)."""
    from onnx import numpy_helper

    from workers.training.convert import FP16_SUFFIX

    out = {}
    for init in proto.graph.initializer:
        name = init.name.removesuffix(FP16_SUFFIX)
        arr = numpy_helper.to_array(init)
        out[name] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    return out


def mix(alpha: float, ours_path: Path = OURS, charset: list[str] | None = None) -> Any:
    """The mixed torch network (``convert.PPOCRNet``, eval mode) over ``charset``
    (default :func:`wide_charset`)."""
    import onnx
    import torch

    from workers.training import convert

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ours_cs = _ours_charset(ours_path)
    charset = charset or wide_charset(ours_cs)
    net = convert.build("ppocrv6_small", "rec", charset=charset)  # base weights, wide head
    base = _arrays(net.onnx_graph)
    ours = _arrays(onnx.load(str(ours_path)))
    w_init, b_init = convert._rec_head(net.onnx_graph)
    base_cs = set(convert.shipped_charset("ppocrv6_small"))
    ours_col = {c: i + 1 for i, c in enumerate(ours_cs)}
    state = net.net.state_dict()
    with torch.no_grad():
        for name, key in net.onnx_names.items():
            b = base[name]
            if name in (w_init.name, b_init.name):
                o = ours[name]
                new = b.copy()
                cols = [(0, 0)] + [(j, ours_col.get(c)) for j, c in enumerate(charset, start=1)]
                for j, oj in cols:
                    if oj is None:
                        continue  # base-only class: the base column
                    in_base = j == 0 or charset[j - 1] in base_cs
                    a = alpha if in_base else 1.0  # Hangul: ours only
                    new[..., j] = a * o[..., oj] + (1.0 - a) * b[..., j]
            else:
                o = ours[name]
                if o.shape != b.shape:
                    raise ValueError(f"{name}: ours {o.shape} vs base {b.shape}")
                new = alpha * o + (1.0 - alpha) * b if b.dtype.kind == "f" else b
            state[key].copy_(torch.from_numpy(np.array(new, copy=True)).reshape(state[key].shape))
    return net.eval()


def export(
    alpha: float, onnx_path: str | Path, *, version: str | None = None, ours: Path = OURS
) -> Path:
    """Mix at ``alpha`` and write the fp16-stored ONNX (+ a JSON report beside it)."""
    from workers.training import convert

    net = mix(alpha, ours)
    path = convert.export_onnx(net, onnx_path, storage="fp16")
    report = {
        "alpha": alpha,
        "classes": len(net.spec.charset) + 1,
        "version": version or f"ppocrv6_small-ft-step1725-wise{alpha:g}-wide",
        "sha256": convert._sha256(path),
        "bytes": path.stat().st_size,
    }
    Path(str(path) + ".json").write_text(json.dumps(report, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--alpha", type=float, action="append", required=True)
    p.add_argument("--onnx", default=None, help="output path (one alpha); default var/mix/")
    p.add_argument(
        "--ours",
        type=Path,
        default=OURS,
        help="the fine-tuned model (default: the shipped rec_ours; the shipped one's recipe "
        "started from ppocrv6_small-ft-step1725, see its MODEL_CARD.md)",
    )
    a = p.parse_args(argv)
    for alpha in a.alpha:
        out = a.onnx if a.onnx and len(a.alpha) == 1 else f"var/mix/rec_a{alpha:g}.onnx"
        print(export(alpha, out, ours=a.ours))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
