"""Font registry for the synthetic label renderer.

Fonts come from the Debian packages listed in ``FONTS.txt`` (see that file). The registry finds
font files by walking known font folders (and ``fc-list`` when present), sorts them into *kinds*
and degrades gracefully: a missing kind falls back to a related one and, at worst, to Pillow's
built-in ``ImageFont.load_default(size)``. Nothing here is required for the dot-grid dot-matrix
and procedural 7-segment renderers, which draw glyphs without any font file.

Kinds: ``ocr``, ``segment7``, ``segment14``, ``dotmatrix``, ``sans``, ``mono``, ``serif``,
``korean`` (a font that has Hangul; such fonts are also listed under sans/serif/mono).
"""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ImageFont

KINDS = ("ocr", "segment7", "segment14", "dotmatrix", "sans", "mono", "serif", "korean")

DEFAULT_FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    os.path.expanduser("~/.fonts"),
    os.path.expanduser("~/.local/share/fonts"),
)

# When a kind has no font, try these kinds in order (the last resort is Pillow's default font).
FALLBACKS: dict[str, tuple[str, ...]] = {
    "ocr": ("mono", "sans"),
    "segment7": ("segment14",),
    "segment14": ("segment7",),
    "dotmatrix": ("mono",),
    "sans": ("mono", "serif"),
    "mono": ("sans", "serif"),
    "serif": ("sans", "mono"),
    "korean": (),
}

# Files that are not text fonts or are too thin to survive degradation.
_EXCLUDE = re.compile(r"(Weather|Math|ExtraLight|Thin|Light|Mini|SEGGCHAN)", re.IGNORECASE)
_ITALIC = re.compile(r"(Italic|Oblique)", re.IGNORECASE)
_BOLD = re.compile(r"(Bold|Black|Heavy|SemiBold|ExtraBold|NanumSquareB|RoundB)", re.IGNORECASE)

# (regex on the file name, kinds). First match wins.
_RULES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"^OCR-?A|^OCRA", re.I), ("ocr",)),
    (re.compile(r"^OCR-?B|^OCRB", re.I), ("ocr",)),
    (re.compile(r"^DSEG7", re.I), ("segment7",)),
    (re.compile(r"^DSEG14", re.I), ("segment14",)),
    (re.compile(r"DotGothic", re.I), ("dotmatrix",)),
    (re.compile(r"^NanumGothicCoding", re.I), ("mono", "korean")),
    (re.compile(r"^NanumMyeongjo", re.I), ("serif", "korean")),
    (re.compile(r"^Nanum", re.I), ("sans", "korean")),
    (re.compile(r"Mono|Terminus|Courier|Coding", re.I), ("mono",)),
    (re.compile(r"Serif", re.I), ("serif",)),
    (re.compile(r"Sans|Roboto|Arial|Helvetica|Liberation|Free", re.I), ("sans",)),
)


@dataclass(frozen=True)
class FontFace:
    """One font file and what it is good for."""

    path: str
    kinds: tuple[str, ...]
    bold: bool = False
    italic: bool = False

    @property
    def name(self) -> str:
        return Path(self.path).stem


@dataclass(frozen=True)
class FontChoice:
    """A picked font: ``path`` is ``None`` for Pillow's built-in default font."""

    kind: str
    path: str | None
    size: int

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path else "pillow-default"

    def load(self) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return load_font(self.path, self.size)


@functools.lru_cache(maxsize=512)
def load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Load (and cache) a font; ``None`` or an unreadable file gives Pillow's default font."""
    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    return ImageFont.load_default(size)


def classify(path: str) -> FontFace | None:
    """Sort one font file into kinds by its file name; ``None`` for files we do not use."""
    name = Path(path).name
    if _EXCLUDE.search(name):
        return None
    for pattern, kinds in _RULES:
        if pattern.search(name):
            return FontFace(
                path=path,
                kinds=kinds,
                bold=bool(_BOLD.search(name)),
                italic=bool(_ITALIC.search(name)),
            )
    return None


def _fc_list_files() -> list[str]:
    exe = shutil.which("fc-list")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, ":", "file"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[0].strip() for line in out.splitlines() if line.strip()]


def _walk(dirs: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            continue
        for ext in ("*.ttf", "*.otf", "*.TTF", "*.OTF"):
            found.extend(str(p) for p in root.rglob(ext))
    return found


@dataclass
class FontRegistry:
    """Font files grouped by kind. Build with :meth:`discover` or pass ``faces`` directly.

    ``FontRegistry(faces=[])`` is a valid registry with no fonts at all: every pick then falls
    back to Pillow's default font (the renderer also avoids Korean text in that case).
    """

    faces: list[FontFace] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Sorted by path so that picks depend only on the set of files, not on walk order.
        self.faces = sorted({f.path: f for f in self.faces}.values(), key=lambda f: f.path)
        self._by_kind: dict[str, list[FontFace]] = {k: [] for k in KINDS}
        for face in self.faces:
            for kind in face.kinds:
                self._by_kind.setdefault(kind, []).append(face)

    @classmethod
    def discover(
        cls, dirs: tuple[str, ...] | None = None, *, use_fc_list: bool = True
    ) -> FontRegistry:
        # SYNTH_FONT_DIRS: more folders to search; SYNTH_FONT_ONLY=1: only those (the GPU
        # machine, where workers/training/gpu/carry.py brings the engine's fonts along)
        extra = tuple(p for p in os.environ.get("SYNTH_FONT_DIRS", "").split(os.pathsep) if p)
        only = os.environ.get("SYNTH_FONT_ONLY", "") not in ("", "0") and bool(extra)
        if only:
            dirs, use_fc_list = (), False
        search = (dirs if dirs is not None else DEFAULT_FONT_DIRS) + extra
        paths = set(_walk(search))
        if use_fc_list and dirs is None:
            paths.update(p for p in _fc_list_files() if p.lower().endswith((".ttf", ".otf")))
        faces = [f for f in (classify(p) for p in sorted(paths)) if f is not None]
        return cls(faces=faces)

    def has(self, kind: str) -> bool:
        return bool(self._by_kind.get(kind))

    def faces_of(self, kind: str, *, italic: bool = False) -> list[FontFace]:
        faces = self._by_kind.get(kind, [])
        if not italic:
            faces = [f for f in faces if not f.italic]
        return faces

    def summary(self) -> dict[str, int]:
        return {k: len(self._by_kind.get(k, [])) for k in KINDS}

    def pick(
        self,
        kind: str,
        size: int,
        rng: random.Random,
        *,
        bold: bool | None = None,
        italic: bool = False,
    ) -> FontChoice:
        """Pick a font of ``kind`` (or of its fallback kinds); Pillow's default at worst.

        ``bold`` None means either; True/False prefers that weight when one exists.
        """
        for k in (kind, *FALLBACKS.get(kind, ())):
            faces = self.faces_of(k, italic=italic) or self.faces_of(k, italic=True)
            if bold is not None:
                faces = [f for f in faces if f.bold == bold] or faces
            if faces:
                return FontChoice(kind=k, path=rng.choice(faces).path, size=size)
        return FontChoice(kind="default", path=None, size=size)


@functools.lru_cache(maxsize=1)
def default_registry() -> FontRegistry:
    """The process-wide registry of installed fonts (discovered once, lazily)."""
    return FontRegistry.discover()


@functools.lru_cache(maxsize=65536)
def _has_glyph(path: str | None, ch: str) -> bool:
    font = load_font(path, 24)
    if not hasattr(font, "getmask"):
        return False
    notdef = font.getmask("\U0010fffd")
    mask = font.getmask(ch)
    return not (mask.size == notdef.size and bytes(mask) == bytes(notdef))


def supports(path: str | None, text: str) -> bool:
    """True when the font draws every non-space character of ``text`` with a real glyph
    (compared against the font's .notdef rendering)."""
    return all(_has_glyph(path, ch) for ch in set(text) if not ch.isspace())


def require_fonts(kinds: tuple[str, ...] = KINDS) -> None:
    """Raise when a font kind the synthetic engine draws is missing on this machine.

    Rendering degrades gracefully (fallback kinds, Pillow's default font), which is right for
    tests and previews but silently changes the training data: a model trained without the
    OCR-A/B, DSEG and Nanum fonts never sees those glyph shapes or any Hangul. Trainers call
    this first; install the fonts with ``make system-deps`` (``FONTS.txt``)."""
    reg = default_registry()
    missing = [k for k in kinds if not reg.has(k)]
    if missing:
        raise RuntimeError(
            f"font kinds missing for the synthetic engine: {', '.join(missing)} "
            "(install them with `make system-deps`, see workers/training/synth/FONTS.txt)"
        )
