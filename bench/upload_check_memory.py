"""Web-process memory of the upload image check under concurrent near-limit PNG bombs.

    .venv/bin/python bench/upload_check_memory.py --n 12

Each mode runs in a fresh process: ``--n`` threads check the same 6300x6300 (39.7 MP, just
under MAX_IMAGE_PIXELS) white PNG of ~130 KB at once. ``full`` is the check before issue 12
(Pillow opens, reads EXIF, decodes every pixel: ``Image.load``); ``bounded`` is
``ocrapp.imagecheck.inspect_image`` (chunks walked, IDAT inflated in 256 KiB pieces and
dropped). Columns: resident set size before the threads start, the process's peak
(``ru_maxrss``) after they finish, and the growth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import io, json, resource, sys, threading, warnings
import django
django.setup()
from PIL import Image
from ocrapp.imagecheck import inspect_image
from tests.images import png_rgb_bomb
mode, n = sys.argv[1], int(sys.argv[2])
bomb = png_rgb_bomb(6300, 6300)
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

def full():
    img = Image.open(io.BytesIO(bomb))
    img.getexif()
    img.load()

def bounded():
    inspect_image(bomb, max_pixels=40_000_000, max_side=12_000)

def rss_now():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmRSS"))

before = rss_now()
threads = [threading.Thread(target=full if mode == "full" else bounded) for _ in range(n)]
for t in threads: t.start()
for t in threads: t.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak, "bomb": len(bomb)}))
"""


def run(mode: str, n: int) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocrapp.settings"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="concurrent checks")
    args = parser.parse_args()
    mib = 1024 * 1024
    rows = {mode: run(mode, args.n) for mode in ("full", "bounded")}
    print(f"{args.n} concurrent checks of a {rows['full']['bomb'] // 1024} KB 39.7 MP PNG\n")
    print("| mode | RSS before (MiB) | peak RSS (MiB) | growth (MiB) |")
    print("|---|---:|---:|---:|")
    for mode, r in rows.items():
        growth = r["peak"] - r["before"]
        print(f"| {mode} | {r['before'] / mib:.0f} | {r['peak'] / mib:.0f} | {growth / mib:.0f} |")
    ratio = (rows["full"]["peak"] - rows["full"]["before"]) / max(
        1, rows["bounded"]["peak"] - rows["bounded"]["before"]
    )
    print(f"\ngrowth ratio full / bounded: {ratio:.0f}x")


if __name__ == "__main__":
    main()
