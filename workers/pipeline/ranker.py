"""Stage: candidate-ranking key-field extraction (``OCR_FIELD_EXTRACTOR=ranker``, the default).

Implements ``fields.FieldExtractor``: ``__call__(lines, schema) -> list[FieldResult]``.

Inputs: the pipeline's ``TextLine`` list (text + polygon in decoded-image pixels, x right, y
down; polygons clockwise from the text's own top-left). The polygons are first turned by the
dominant text direction (``layout.text_direction``: upside-down, sideways and slightly skewed
labels alike); every geometric feature below is in that upright frame.

1. **Keys.** Each line's text is compared in key form (``fieldspec.keys.key_norm``: accents,
   case, punctuation and spaces dropped; for keys of 4+ characters also the look-alikes 0/O,
   1/I/L, 5/S, 8/B) with the vocabulary: the product schema's own ``FieldSpec.keywords``
   (resolved with ``fieldspec.catalogue.resolve_schema``; they win on a conflict), the built-in
   multilingual ``fieldspec.keys.FIELD_KEYS``, the generic ``WEAK_KEYS`` and the distractor
   ``OTHER_KEYS``. A key starts at a word start (CJK/Hangul keys anywhere) and ends before a
   non-letter/digit; the longest key wins at a position; Latin keys of 6+ characters also match
   with one edit (two from 10), at a lower strength, and CJK / Hangul keys of 3+ characters
   with one character inside them that the reader was unsure of (under ``UNSURE_CHAR``:
   "机力号" for 机身号, whose "身" it could not write). A line that is one key in several
   languages ("S/N / Ser.-Nr. / N° de série") becomes one key over the whole line; a generic
   key glued into a compound ("Kat.-Nr.") or qualified by a word of its own ("N° enreg.:")
   names another thing (no key, or a distractor key).
2. **Candidates.** The line's words with the key spans cut out and separators (``: # = . -``)
   trimmed are tokens; a candidate is a run of 1..4 consecutive tokens of one line that crosses
   no key (the whole rest of the segment for free-text fields). Its anchor is the nearest key on
   its left in the same *row* (lines that each overlap every other line of the row by half
   the smaller height, ordered by x:
   same line after the key, or the next table cell), counting the tokens in between; else the
   key right above it (previous row, overlapping x, the key not followed by a value of its
   own: key-above-value layouts and header rows). A candidate anchored to another field's key
   or to a distractor key is claimed and never taken.
3. **Scores** per (field, candidate): anchor kind x key strength, tokens in between and gap,
   the field's rules (``fields.check_value``: pattern, format, check digit, date, from the
   schema at run time), field-typical shape (digit share, length, ratings and dates are not
   serials, extra tokens of a spaced digit group, line height for keyless values), header
   position for the manufacturer. Fields are assigned jointly: greedy on score over all
   (field, candidate) pairs, one candidate per field, one field per token.
4. **Confidence** (``FieldResult.extraction_confidence``): 0.995 for a value right after an
   exact key that passes its rules, 0.99 in the next cell or under the key, lower for fuzzy or
   generic keys, rules failed, or a second keyed candidate with another value; a value without
   any key gets at most 0.55 (0.35 when another candidate scores close), precise formats with
   a check digit (IMEI, GTIN) or a MAC 0.9 (a MAC only when it looks like one by itself:
   separated octets or a hex letter; 12 bare digits get 0.55). ``confidence`` = that x the
   line's confidence. An optional field (not required, not a date, not the serial) whose
   value no key names and whose confidence is under ``UNKEYED_MIN`` is not returned at all.

With ``use_transformer`` (``OCR_RANKER_TRANSFORMER=1``, the default), part number, lot and
model that no key names and the schema requires are ranked by the transformer's per-word field
probability (see the class); the transformer then runs on such reads only (about 55 ms on the
CPU).

Free-text receipt fields (catalogue ``document="receipt"``: company, address, date, total) are
found by the receipt rules (``receipt.extract_receipt``: header, address block, keyed date and
total, with the schema's receipt keywords at run time); ``receipt="transformer"`` hands them
to the transformer extractor instead (``extractor.TransformerFieldExtractor``, built lazily on
first use; what the ranker did before, bench/sroie_lines.py compares the two).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from workers.fieldspec.catalogue import KNOWN_FIELDS, resolve_schema
from workers.fieldspec.checkdigits import CHECK_DIGITS
from workers.fieldspec.grammar import FieldSpec, ProductSchema, char_script
from workers.fieldspec.keys import FIELD_KEYS, OTHER, OTHER_KEYS, WEAK_KEYS, key_char, key_norm

from .extractor.layout import text_direction
from .fields import check_value, missing_required
from .receipt import extract_receipt
from .types import FieldResult, ModelInfo, Polygon, TextLine

RANKER_VERSION = "16"  # 2: an unkeyed MAC of bare digits is keyless; 3: caption keys in a box
# corner, expiry_date keyless, yearless dates; 4: a " / " stack of one key in several languages
# is one key over the line; 5: no guess for an optional field that no key names (UNKEYED_MIN);
# 6: caption fixes, no CJK / Hangul in a code field; 7: Hangul words after a key are its own,
# order keys; 8: a generic key glued into a compound ("Kat.-Nr.") is no serial key, no key spans
# " / ", "Lot-Nr." and "S/N-" are keys, a word left of a header key is in the column before it;
# 9: a generic key qualified by a word of its own ("N° enreg.:") names another thing; 10: the
# key 제조시 (the reader's 제조사); 11: a distractor key claims its value line right of it ("Tel"
# over "+33 8 58 19 80 51"), no header key over a value that follows an unknown key of its line;
# 12: the serial key 机号; 13: a line joins a row only when it overlaps every line of it;
# 14: a model of letters only in mixed case is a word ("Manual"), no rival to a type code;
# a CJK / Hangul key with one unsure character inside ("机力号" for 机身号); 15: a slashed key
# glued to its value ("S/N0075 3688 8896"); 16: a keyless Latin maker name after one Hangul /
# CJK word ("제조 Broven Elektro S.p.A.") leaves that word out

# anchor kinds -> base score (times the key strength)
W_ANCHOR = {"left": 4.0, "cell": 3.8, "above": 3.5, "below": 3.5, "far": 2.0}
W_BETWEEN = 0.8  # per token between the key and the candidate
W_VALID = 1.5
W_INVALID = -1.5
ACCEPT = 0.8  # minimum score of an assigned pair
STRENGTH_FUZZY = 0.85
UNSURE_CHAR = 0.5  # a CJK key's character read under this confidence may be any other
STRENGTH_WEAK = 0.7

CONF = {"left": 0.995, "cell": 0.99, "above": 0.99, "below": 0.98, "far": 0.7}
CONF_INVALID = 0.6
CONF_KEYLESS = 0.55
CONF_KEYLESS_AMBIGUOUS = 0.35
CONF_KEYLESS_PRECISE = 0.9
CONF_CONFLICT = 0.6  # factor: another keyed candidate of the field with another value
# fields without a key (and not keyless by their rules) that the transformer may rank
LEARNED_FIELDS = frozenset({"part_number", "lot", "model"})
LEARNED_MIN_PROB = 0.5
CONF_LEARNED = 0.5  # x the transformer's probability
# An optional field (not required by the schema, not a date) that no key names is returned
# only from this extraction confidence on: below it the value is a guess (a brand that may
# not be the maker, a code under a key we do not know), wrong far more often than right on
# layouts the ranker has never seen (bench/NOTES-generalisation.md), and it would send an
# otherwise sure read to review. Required fields and the serial (the traced identifier a
# reviewer confirms) keep their guesses (to review).
UNKEYED_MIN = 0.6
GUESSES_KEPT = frozenset({"serial_number"})

MAX_TOKENS = 4
# how the receipt fields (catalogue document="receipt") are found: "rules" (receipt.py, the
# schema's keywords) or "transformer" (the layout model, what the ranker did before)
RECEIPT_MODES = ("rules", "transformer")
# words that continue a key without naming another thing (part "Number", MAC "Addr")
KEY_SUFFIXES = frozenset(
    key_norm(w)
    for w in (
        "No",
        "Nr",
        "Num",
        "Number",
        "Nummer",
        "Numéro",
        "Numero",
        "Número",
        "Code",
        "Codice",
        "Código",
        "ID",
        "Addr",
        "Address",
        "Adresse",
        "Name",
        "Nom",
        "Nombre",
        "Nome",
        "Date",
        "Datum",
        "Data",
        "Fecha",
        "#",
    )
)
_SUFFIX_RE = re.compile(r"[\s./:#-]*([^\W\d_]+\.?)(?=[\s:：#.]|$)")
# one or two words of letters that end with a colon after a generic key qualify it
_QUALIFIER_RE = re.compile(r"\.?\s+((?:[^\W\d_]{2,}\.?\s+)?[^\W\d_]{3,}\.?)\s*[:：]")
_TRIM_LEAD = ":：#=|.-~,;*)]"
_TRIM_TAIL = ":：#=|,;*(["
CODE_FIELDS = frozenset({"serial_number", "part_number", "lot", "imei", "gtin", "mac"})
_UNIT_RE = re.compile(
    r"^[~<>±+-]?\d+([.,]\d+)?(/\d+)?\s*(V|VAC|VDC|V~|KV|MV|A|MA|KA|HZ|W|KW|MW|KVA|VA|KG|G|MM|CM|M"
    r"|°C|C|°F|%|RPM|R/MIN|MIN-1|BAR|PSI|MPA|KPA|NM|L|ML|DB|AH|MAH|WH|KWH|PCS|PH|P)$",
    re.IGNORECASE,
)
_IP_RE = re.compile(r"^IP\d{2}[A-Z]?$", re.IGNORECASE)
_STANDARD_BODIES = frozenset(
    "IEC EN ISO UL CSA DIN VDE GB GB/T JIS KS ANSI IEEE ASTM NEMA BS NF EN/IEC IEC/EN".split()
)
_PHONE_RE = re.compile(r"^\+?\(?\d{1,4}\)?([-. ]\d{2,5}){2,4}$")
_COMPANY_RE = re.compile(
    r"(\bCO\b|\bLTD\b|\bINC\b|\bCORP|\bGMBH\b|\bAG\b|\bKG\b|\bS\.?A\.?\b|\bS\.?P\.?A\.?\b|\bSRL\b"
    r"|\bB\.?V\.?\b|\bLLC\b|\bPLC\b|\bK\.?K\.?\b|\bOY\b|\bAB\b|\bSAS\b|\bSARL\b|\bLIMITED\b"
    r"|\bINDUSTRIES\b|\bELECTRIC\b|\(주\)|주식회사|株式会社|有限公司|集团|(공업|산업|전자)$)",
    re.IGNORECASE,
)
_PRODUCT_WORDS = re.compile(
    r"\b(MOTOR|PUMP|DRIVE|DRIVER|UNIT|VALVE|SUPPLY|TRANSMITTER|COMPRESSOR|REDUCER|BATTERY|PACK"
    r"|SENSOR|INVERTER|CONTROLLER|TRANSFORMER|GENERATOR|FAN|BLOWER|HEATER|BOILER|MODULE"
    r"|CHARGER|ADAPTER|SWITCH|RELAY|BREAKER|METER|GAUGE|CYLINDER|GEARBOX|SPINDLE|ROBOT"
    r"|PANEL|CABINET|FILTER|REGULATOR|ACTUATOR|ENCODER|LAMP|LIGHT|CAMERA|PRINTER|MACHINE)\b"
    r"|전동기|모터|펌프|드라이브|장치|전송기|밸브|압축기|감속기|센서|배터리|인버터|전원"
    r"|电机|电动机|泵|变频器|阀|模块|電動機|ポンプ|モータ|インバータ",
    re.IGNORECASE,
)


def _is_cjk(ch: str) -> bool:
    """Hangul or CJK/kana (a character that is its own word in a key)."""
    return char_script(ch) != "latin"


def _char_width(ch: str) -> float:
    if _is_cjk(ch):
        return 1.8
    return 0.6 if ch == " " else 1.0


# ---------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Key:
    field: str
    strength: float
    text: str
    schema: bool = False  # from the product schema


class Vocabulary:
    """Key form -> (field, strength, key) for exact matches (strict form for keys shorter than
    4 characters, loose form otherwise) and the fuzzy-matchable long Latin keys."""

    def __init__(self, entries: list[_Key], exclude: frozenset[str] = frozenset()) -> None:
        self.strict: dict[str, _Key] = {}
        self.loose: dict[str, _Key] = {}
        for k in entries:  # later entries override earlier ones (schema keys come last)
            strict = key_norm(k.text)
            if not any(ch.isalpha() for ch in strict):
                continue  # "(01)": a key of digits only would match inside values
            if strict in exclude:
                continue
            if len(strict) < 4:
                self.strict[strict] = k
            else:
                self.loose[key_norm(k.text, loose=True)] = k
        self.strict_lens = sorted({len(s) for s in self.strict}, reverse=True)
        self.loose_lens = sorted({len(s) for s in self.loose}, reverse=True)
        self.fuzzy: dict[tuple[int, str], list[tuple[str, _Key]]] = {}
        for norm, k in self.loose.items():
            if len(norm) >= 6 and norm.isascii():
                self.fuzzy.setdefault((0, norm[:2]), []).append((norm, k))
                self.fuzzy.setdefault((1, norm[-2:]), []).append((norm, k))
        # keys of three or more CJK / Hangul characters, by (first, last) character, for a
        # key with one unsure character inside it (``_unsure_cjk_at``)
        self.cjk: dict[tuple[str, str], list[tuple[str, _Key]]] = {}
        for norm, k in list(self.strict.items()) + list(self.loose.items()):
            if len(norm) >= 3 and all(ch.isalpha() and _is_cjk(ch) for ch in norm):
                self.cjk.setdefault((norm[0], norm[-1]), []).append((norm, k))


def _builtin_entries() -> list[_Key]:
    out = [_Key(OTHER, 1.0, k) for k in OTHER_KEYS]
    for f, keys in WEAK_KEYS.items():
        out += [_Key(f, STRENGTH_WEAK, k) for k in keys]
    for f, keys in FIELD_KEYS.items():
        out += [_Key(f, 1.0, k) for k in keys]
    return out


@lru_cache(maxsize=64)
def _vocabulary(
    schema_keys: tuple[tuple[str, tuple[str, ...]], ...], exclude: frozenset[str] = frozenset()
) -> Vocabulary:
    entries = _builtin_entries()
    for name, keys in schema_keys:
        entries += [_Key(name, 1.0, k, schema=True) for k in keys]
    return Vocabulary(entries, exclude)


def schema_vocabulary(ps: ProductSchema, exclude: frozenset[str] = frozenset()) -> Vocabulary:
    """The built-in vocabulary plus the schema's own keywords (those that differ from what the
    catalogue gives the field anyway), the schema winning on a conflict. ``exclude``: key
    forms (``key_norm``) left out (the leave-keywords-out evaluation)."""
    own: list[tuple[str, tuple[str, ...]]] = []
    for spec in ps.fields:
        known = KNOWN_FIELDS.get(spec.name)
        if not spec.keywords or (known is not None and known.document == "receipt"):
            continue  # receipt keywords are the receipt extractor's (receipt.py)
        if known is not None and tuple(spec.keywords) == tuple(known.spec.keywords):
            # inherited from the catalogue: the same words as the built-in vocabulary holds,
            # keep the built-in strengths ("Date" stays a generic key)
            extra = tuple(k for k in spec.keywords if k not in _builtin_texts())
            if extra:
                own.append((spec.name, extra))
            continue
        own.append((spec.name, tuple(spec.keywords)))
    return _vocabulary(tuple(own), exclude)


@lru_cache(maxsize=1)
def _builtin_texts() -> frozenset[str]:
    return frozenset(k.text for k in _builtin_entries())


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit + 1`` once it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        best = cur[0]
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            best = min(best, cur[j])
        if best > limit:
            return limit + 1
        prev = cur
    return prev[-1]


# ---------------------------------------------------------------------------- line analysis


@dataclass
class KeyHit:
    line: int
    start: int  # char offsets in the line text
    end: int
    field: str  # a field name or fieldspec.keys.OTHER
    strength: float
    key: str
    x0: float = 0.0  # upright frame
    x1: float = 0.0


@dataclass
class Token:
    line: int
    start: int
    end: int
    text: str
    x0: float = 0.0
    x1: float = 0.0
    keyish: bool = False  # letters followed by ":" or "#": a key the vocabulary lacks


@dataclass
class _Line:
    index: int
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    conf: float
    cum: list[float]
    keys: list[KeyHit]
    tokens: list[Token]
    row: int = 0
    h_rel: float = 1.0  # height / the median line height

    @property
    def h(self) -> float:
        return max(self.y1 - self.y0, 1.0)

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    def x_at(self, pos: int) -> float:
        total = self.cum[-1] or 1.0
        return self.x0 + (self.cum[pos] / total) * (self.x1 - self.x0)


def find_keys(text: str, vocab: Vocabulary, confs: Sequence[float] | None = None) -> list[KeyHit]:
    """Key matches in one line of text (module docstring, step 1), left to right. ``confs``:
    the recogniser's per-character confidences of ``text`` (a CJK key with one character it
    was unsure of inside it still counts, ``_unsure_cjk_at``)."""
    strict: list[str] = []
    loose: list[str] = []
    owner: list[int] = []
    for i, ch in enumerate(text):
        s = key_char(ch)
        lo = key_char(ch, loose=True)
        if len(lo) != len(s):
            lo = s
        for a, b in zip(s, lo, strict=True):
            strict.append(a)
            loose.append(b)
            owner.append(i)
    n = len(strict)
    ns, nl = "".join(strict), "".join(loose)
    hits: list[KeyHit] = []
    k = 0

    def ends_ok(end_orig: int, key_last: str, start_orig: int) -> bool:
        if end_orig >= len(text):
            return True
        nxt = text[end_orig]
        if not nxt.isalnum() or _is_cjk(key_last) or _is_cjk(nxt):
            return True
        # a slashed abbreviation glued to its value ("S/N0075 3688 8896", "P/N12345"): the
        # slash marks it as a key, no code starts with "S/N"
        key = text[start_orig:end_orig]
        return "/" in key and key[-1].isalpha() and len(key) <= 4

    def one_key(k: int, ln: int) -> bool:  # "1OT / N.º de lote" holds no key "LOT NO"
        return _STACK_SEP.search(text, owner[k], owner[k + ln - 1] + 1) is None

    while k < n:
        o = owner[k]
        starts_word = o == 0 or not text[o - 1].isalnum() or _is_cjk(text[o])
        if k > 0 and owner[k - 1] == o:  # inside a character that expanded (NFKC)
            starts_word = False
        if not starts_word:
            k += 1
            continue
        found: tuple[int, _Key] | None = None
        for ln in vocab.loose_lens:
            if k + ln <= n and nl[k : k + ln] in vocab.loose:
                if ends_ok(owner[k + ln - 1] + 1, ns[k + ln - 1], owner[k]) and one_key(k, ln):
                    found = (ln, vocab.loose[nl[k : k + ln]])
                    break
        if found is None or found[0] < 4:
            for ln in vocab.strict_lens:
                if found is not None and ln <= found[0]:
                    break
                if k + ln <= n and ns[k : k + ln] in vocab.strict:
                    if ends_ok(owner[k + ln - 1] + 1, ns[k + ln - 1], owner[k]) and one_key(k, ln):
                        found = (ln, vocab.strict[ns[k : k + ln]])
                        break
        strength = 1.0
        if found is None and vocab.fuzzy:
            found = _fuzzy_at(nl, k, owner, text, vocab)
            strength = STRENGTH_FUZZY
        if found is None and confs is not None and vocab.cjk:
            found = _unsure_cjk_at(nl, k, owner, confs, vocab)
            if found is not None and not (
                ends_ok(owner[k + found[0] - 1] + 1, ns[k + found[0] - 1], owner[k])
                and one_key(k, found[0])
            ):
                found = None
            strength = STRENGTH_FUZZY
        if found is None:
            k += 1
            continue
        ln, key = found
        s0, e0 = owner[k], owner[k + ln - 1] + 1
        prev = hits[-1] if hits else None
        if (
            ln < 4
            and e0 + 1 < len(text)
            and text[e0] in "-/"
            and text[e0 + 1].isalnum()
            and not _suffixed(text, e0)
            and "/" not in text[s0:e0]  # "S/N-UPU845209": a slashed key is no code
        ):
            k += 1  # "FW-2121-4576", "PO/1234": the start of a code, not a key
            continue
        if (
            key.field == OTHER
            and prev is not None
            and prev.field != OTHER
            and not text[prev.end : s0].strip(" .:/-#")
        ):
            k += 1  # a distractor key right after a field key is that field's value
            continue
        if key.strength <= STRENGTH_WEAK and _glued_compound(text, s0, prev):
            k += ln  # "Kat.-Nr.", "E-Nr.": the number of a thing no key of ours names
            continue
        if (
            prev is not None
            and key.strength <= STRENGTH_WEAK
            and not text[prev.end : s0].strip(" .:/-#")
        ):
            prev.end = e0  # "Lot No.": a generic key right after a key is part of it
        else:
            hits.append(KeyHit(-1, s0, e0, key.field, key.strength * strength, key.text))
        k += ln
    for h in hits:  # a key word then a key suffix: part "Number", MAC "Addr", lot "No."
        for _ in range(2):
            m = _SUFFIX_RE.match(text, h.end)
            if m is None or key_norm(m.group(1)) not in KEY_SUFFIXES:
                break
            if any(o.start < m.end(1) and o.start >= h.end for o in hits if o is not h):
                break
            h.end = m.end(1)
    for n, h in enumerate(hits):  # "N° enreg.:", "Data scadenza:": a generic key that a word
        if h.strength > STRENGTH_WEAK:  # of its own qualifies names that word's thing
            continue
        m = _QUALIFIER_RE.match(text, h.end)
        if m is not None and not any(h.end <= o.start < m.end(1) for o in hits if o is not h):
            hits[n] = replace(h, end=m.end(1), field=OTHER)
    return _key_stack(text, hits)


def _glued_compound(text: str, start: int, prev: KeyHit | None) -> bool:
    """Whether the generic key at ``start`` ("Nr.", "No.") ends a compound word glued to it by
    "-" or "." ("Kat.-Nr.", "E-Nr.", "Zul.-Nr.") whose head is no key of ours (a head that is
    one, "Lot-Nr.", was matched before it and keeps the generic key as its own suffix): such a
    word names another thing's number, not a serial."""
    head = start
    while head > 0 and text[head - 1] in "-.":
        head -= 1
    if head == start or head == 0 or not text[head - 1].isalnum():
        return False
    while head > 0 and not text[head - 1].isspace():
        head -= 1
    return prev is None or prev.end <= head


def _suffixed(text: str, end: int) -> bool:
    """Whether a short key ending at ``end`` goes on with "-" and a key suffix ("Lot-Nr.",
    "Typ-No."): a compound key, not the start of a code ("FW-2121")."""
    m = _SUFFIX_RE.match(text, end)
    return m is not None and key_norm(m.group(1)) in KEY_SUFFIXES


_STACK_SEP = re.compile(r"\s+/\s+")


def _key_stack(text: str, hits: list[KeyHit]) -> list[KeyHit]:
    """A line that is one key in several languages ("S/N / Ser.-Nr. / N° de série",
    "형식 / Type", "Codice ricambio / P/N.") -> one key over the whole line, so the value under
    it is aligned with the line, not with its last key, and unknown words of the stack
    ("ricambio", an OCR-damaged "Tvpe") are key text, not values.

    The line splits at " / " into 2+ segments, none with a digit outside its keys or more
    than three other words; at least half hold a key, the others are letters (no company
    name); every key names one field (a manufacturer stack: every segment a key, since
    "Hersteller / ACME" is a key and its value). Otherwise the hits stay as they are."""
    if not hits:
        return hits
    segs, pos = [], 0
    for m in _STACK_SEP.finditer(text):
        segs.append((pos, m.start()))
        pos = m.end()
    segs.append((pos, len(text)))
    if len(segs) < 2 or len({h.field for h in hits}) != 1:
        return hits
    keyed = 0
    for s, e in segs:
        inside = [h for h in hits if s <= h.start and h.end <= e]
        rest = list(text[s:e])
        for h in inside:
            rest[h.start - s : h.end - s] = " " * (h.end - h.start)
        words = "".join(rest)
        if any(ch.isdigit() for ch in words) or len(words.split()) > 3:
            return hits
        if inside:
            keyed += 1
        elif not any(ch.isalpha() for ch in words) or _COMPANY_RE.search(words):
            return hits
    if sum(s <= h.start and h.end <= e for h in hits for s, e in segs) != len(hits):
        return hits  # a key across a separator
    if 2 * keyed < len(segs) or (hits[0].field == "manufacturer" and keyed < len(segs)):
        return hits
    start = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    strength = max(h.strength for h in hits)
    return [KeyHit(-1, start, end, hits[0].field, strength, hits[0].key)]


def _unsure_cjk_at(
    nl: str, k: int, owner: list[int], confs: Sequence[float], vocab: Vocabulary
) -> tuple[int, _Key] | None:
    """A CJK / Hangul key of three or more characters at key-form offset ``k`` with one
    character inside it (not the first or last) read otherwise at a confidence under
    ``UNSURE_CHAR``: "机力号" with "力" at 0.4 is "机身号" whose "身" the reader could not
    write. One sure wrong character is another word, not this key."""
    best: tuple[int, _Key] | None = None
    for ln in range(3, min(len(nl) - k, 8) + 1):
        for norm, key in vocab.cjk.get((nl[k], nl[k + ln - 1]), ()):
            if len(norm) != ln:
                continue
            diff = [j for j in range(1, ln - 1) if nl[k + j] != norm[j]]
            if len(diff) != 1:
                continue
            o = owner[k + diff[0]]
            if o < len(confs) and confs[o] < UNSURE_CHAR and (best is None or ln > best[0]):
                best = (ln, key)
    return best


def _fuzzy_at(
    nl: str, k: int, owner: list[int], text: str, vocab: Vocabulary
) -> tuple[int, _Key] | None:
    """A long Latin key within one edit (two from 10 characters) at key-form offset ``k``."""
    cands: dict[str, _Key] = {}
    for norm, key in vocab.fuzzy.get((0, nl[k : k + 2]), ()):
        cands[norm] = key
    # suffix index: any length the text could end at
    for ln in range(6, min(len(nl) - k, 26) + 1):
        for norm, key in vocab.fuzzy.get((1, nl[k + ln - 2 : k + ln]), ()):
            # one of the first two characters right (the other case is the prefix index)
            if abs(len(norm) - ln) <= 2 and (nl[k] == norm[0] or nl[k + 1 : k + 2] == norm[1]):
                cands[norm] = key
    best: tuple[int, int, _Key] | None = None
    for norm, key in cands.items():
        limit = 2 if len(norm) >= 10 else 1
        for ln in range(len(norm) - limit, len(norm) + limit + 1):
            if k + ln > len(nl) or ln < 5:
                continue
            end_orig = owner[k + ln - 1] + 1
            if end_orig < len(text) and text[end_orig].isalnum():
                continue
            if nl[k + ln - 1] != norm[-1]:
                continue  # OCR damage sits inside a key: "DEVICES" is not "DEVICE SN"
            d = _edit_distance(nl[k : k + ln], norm, limit)
            if d <= limit and (best is None or ln - 3 * d > best[1] - 3 * best[0]):
                best = (d, ln, key)
    if best is None or best[0] == 0:
        return None
    return best[1], best[2]


def _tokens(text: str, keys: list[KeyHit], line: int) -> list[Token]:
    """Whitespace words of ``text`` with key spans cut out and separators trimmed."""
    out: list[Token] = []
    for m in re.finditer(r"\S+", text):
        pieces = [(m.start(), m.end())]
        for kh in keys:
            nxt = []
            for s, e in pieces:
                if kh.end <= s or kh.start >= e:
                    nxt.append((s, e))
                    continue
                if s < kh.start:
                    nxt.append((s, kh.start))
                if kh.end < e:
                    nxt.append((kh.end, e))
            pieces = nxt
        for s, e in pieces:
            while s < e and text[s] in _TRIM_LEAD:
                s += 1
            e_raw = e
            while e > s and text[e - 1] in _TRIM_TAIL:
                e -= 1
            if e > s:
                word = text[s:e]
                keyish = (
                    e_raw > e
                    and text[e] in ":：#"
                    and sum(ch.isalpha() for ch in word) >= 2
                    and not any(ch.isdigit() for ch in word)
                )
                out.append(Token(line, s, e, word, keyish=keyish))
    return out


def _upright(polys: list[Polygon]) -> list[list[tuple[float, float]]]:
    """The polygons turned by the dominant text direction (``layout.text_direction``): every
    angle, also a few degrees of skew, which would make the axis-aligned boxes taller and mix
    up the rows."""
    angle = text_direction(polys)
    if abs(angle) < 0.5:
        return [[(float(x), float(y)) for x, y in p] for p in polys]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [[(c * x + s * y, -s * x + c * y) for x, y in p] for p in polys]


def analyse(lines: list[TextLine], vocab: Vocabulary) -> list[_Line]:
    """Lines with their keys, tokens, upright boxes and rows (module docstring)."""
    ups = _upright([ln.polygon for ln in lines])
    out: list[_Line] = []
    for i, (ln, up) in enumerate(zip(lines, ups, strict=True)):
        xs = [p[0] for p in up] or [0.0]
        ys = [p[1] for p in up] or [0.0]
        cum = [0.0]
        for ch in ln.text:
            cum.append(cum[-1] + _char_width(ch))
        keys = find_keys(ln.text, vocab, ln.char_confidences)
        info = _Line(i, ln.text, min(xs), min(ys), max(xs), max(ys), ln.confidence, cum, keys, [])
        for kh in keys:
            kh.line = i
            kh.x0, kh.x1 = info.x_at(kh.start), info.x_at(kh.end)
        info.tokens = _tokens(ln.text, keys, i)
        for t in info.tokens:
            t.x0, t.x1 = info.x_at(t.start), info.x_at(t.end)
        out.append(info)
    hs = sorted(ln.h for ln in out)
    med = hs[len(hs) // 2] if hs else 1.0
    for ln in out:
        ln.h_rel = ln.h / max(med, 1.0)
    # rows: lines whose vertical extents overlap by half the smaller height (a key and its
    # value in another font size share a baseline, not a centre), each with every line of the
    # row: a padded key box right above its value overlaps the value of the next column, and a
    # chain through it put the key and its own value in one row
    order = sorted(range(len(out)), key=lambda j: out[j].cy)
    row, row_members = -1, []  # type: ignore[var-annotated]
    for j in order:
        ln = out[j]
        if row_members and all(
            min(ln.y1, out[m].y1) - max(ln.y0, out[m].y0) >= 0.5 * min(ln.h, out[m].h)
            for m in row_members
        ):
            row_members.append(j)
            ln.row = row
            continue
        row += 1
        row_members = [j]
        ln.row = row
    return out


# ---------------------------------------------------------------------------- candidates


@dataclass
class Anchor:
    kind: str  # left | cell | above | below (a caption key under the value) | far
    key: KeyHit
    between: int = 0
    gap: float = 0.0  # horizontal (left/cell) or vertical (above) gap in line heights


@dataclass
class Candidate:
    line: int
    tokens: tuple[int, ...]  # token indices in the line
    start: int
    end: int
    raw: str
    x0: float
    x1: float
    anchor: Anchor | None
    rest: bool = False  # the whole rest of a segment (free-text fields)
    unknown_key: bool = False  # right after a key-like word the vocabulary lacks ("Foo-ID:")
    whole: bool = False  # the whole line, distractor keys inside included (header brand)
    # the value goes on in the next OCR line of the row ("OCT" | "2025"): (line, token ids)
    cont: tuple[int, tuple[int, ...]] | None = None

    @property
    def ids(self) -> set[tuple[int, int]]:
        out = {(self.line, t) for t in self.tokens}
        if self.cont is not None:
            out |= {(self.cont[0], t) for t in self.cont[1]}
        return out

    def token_list(self, info: list[_Line]) -> list[Token]:
        toks = [info[self.line].tokens[t] for t in self.tokens]
        if self.cont is not None:
            toks += [info[self.cont[0]].tokens[t] for t in self.cont[1]]
        return toks


def _row_sequences(info: list[_Line]) -> dict[int, list[tuple[float, str, Any]]]:
    rows: dict[int, list[tuple[float, str, Any]]] = {}
    for ln in info:
        seq = rows.setdefault(ln.row, [])
        seq += [(k.x0, "key", k) for k in ln.keys]
        seq += [(t.x0, "tok", (ln.index, n)) for n, t in enumerate(ln.tokens)]
    for seq in rows.values():
        seq.sort(key=lambda e: e[0])
    return rows


def _left_anchor(
    info: list[_Line], seq: list[tuple[float, str, Any]], first: tuple[int, int]
) -> Anchor | None:
    """Nearest key left of token ``first`` in its row (tokens in between counted)."""
    pos = next(i for i, e in enumerate(seq) if e[1] == "tok" and e[2] == first)
    line, _ = first
    tok = info[line].tokens[first[1]]
    between = 0
    for _x, kind, obj in reversed(seq[:pos]):
        if kind == "key":
            h = info[line].h
            if obj.line != line and not _overlap_y(info[obj.line], info[line]):
                continue  # in the row only through a tall line between them: not this cell
            gap = max(0.0, (tok.x0 - obj.x1) / h)
            if between == 0:
                return Anchor("left" if obj.line == line else "cell", obj, 0, gap)
            return Anchor("far", obj, between, gap)
        if info[obj[0]].tokens[obj[1]].keyish:
            continue  # "Lot Number:" with "Number" unknown: still the key's own words
        if _foreign(info[obj[0]].tokens[obj[1]].text) and not _foreign(tok.text):
            continue  # "시리얼 넘버" misread: the Hangul words after a key are its own
        between += 1
        if between > 8:
            return None
    return None


def _overlap_y(a: _Line, b: _Line) -> bool:
    """Whether two lines share at least a third of the smaller height vertically."""
    return min(a.y1, b.y1) - max(a.y0, b.y0) >= 0.3 * min(a.h, b.h)


def _key_has_value(
    info: list[_Line], rows: dict[int, list[tuple[float, str, Any]]], kh: KeyHit
) -> bool:
    """Whether a token follows the key in its row (then the key is not a column header)."""
    seq = rows[info[kh.line].row]
    pos = next(i for i, e in enumerate(seq) if e[1] == "key" and e[2] is kh)
    if pos + 1 >= len(seq):
        return False
    x, kind, obj = seq[pos + 1]
    if kind == "key":
        return False
    if kh.field in CODE_FIELDS and _foreign(info[obj[0]].tokens[obj[1]].text):
        return False  # "MAC 주조" (a misread key tail): no code value follows the key
    gap = (x - kh.x1) / info[kh.line].h
    return gap < 4.0


def _foreign(text: str) -> bool:
    """Whether a text holds a CJK or Hangul character (no code field can: serials, part and
    lot numbers, MAC, IMEI and GTIN are Latin letters, digits and separators)."""
    return any(_is_cjk(ch) for ch in text)


def _aligned(ax0: float, ax1: float, x0: float, x1: float, h: float) -> bool:
    """Whether the x span ``ax0..ax1`` stands over or under ``x0..x1`` (they overlap, or their
    left edges are within 1.5 heights ``h``)."""
    return min(ax1, x1) - max(ax0, x0) > 0 or abs(ax0 - x0) / h <= 1.5


def _above_anchor(
    info: list[_Line],
    above_keys: list[KeyHit],
    line: _Line,
    x0: float,
    x1: float,
) -> Anchor | None:
    best: tuple[float, KeyHit] | None = None
    for kh in above_keys:
        kl = info[kh.line]
        vgap = (line.y0 - kl.y1) / max(line.h, 1.0)
        if vgap > 2.5 or vgap < -0.5:  # padded boxes of a tight key-over-value overlap
            continue
        ov = min(x1, kh.x1) - max(x0, kh.x0)
        near = abs(x0 - kh.x0) / line.h
        # a caption in the corner of a box ("Use by" top left, the date under it and to the
        # right): the value starts where the key ends, within its own height
        caption = -0.2 <= (x0 - kh.x1) / line.h <= 0.75
        if not (caption or _aligned(kh.x0, kh.x1, x0, x1, line.h)):
            continue
        score = ov / max(x1 - x0, 1.0) - 0.1 * near
        if best is None or score > best[0]:
            best = (score, kh)
    if best is None:
        return None
    kh = best[1]
    return Anchor("above", kh, 0, max(0.0, (line.y0 - info[kh.line].y1) / line.h))


def _nearest_aligned(lines: list[_Line], kl: _Line, any_line: bool = False) -> _Line | None:
    """The line of ``lines`` (one row) with tokens (``any_line``: or keys only) aligned with
    line ``kl``, nearest by left edge: the key's whole line, since "ロット / Lot / N. lotto"
    stands over its value as a whole."""
    near = [
        ln
        for ln in lines
        if (ln.tokens or (any_line and ln.keys)) and _aligned(ln.x0, ln.x1, kl.x0, kl.x1, kl.h)
    ]
    return min(near, key=lambda ln: abs(ln.x0 - kl.x0), default=None)


def caption_keys(
    info: list[_Line],
    by_row: dict[int, list[_Line]],
    header_keys: dict[int, list[KeyHit]],
    fits: Callable[[str, str], bool] | None = None,
) -> set[int]:
    """``id`` of the column keys that caption the value printed right ABOVE them (a big value
    with a small key under it, in a box or on a barcode sticker), not a header of the line below.

    A key without a value to its right is a caption when the nearest aligned line above it is
    a value line (no key of its own), the gap up is at most 1.5 key heights and under 0.7 of
    the gap down to the next aligned line (none below: any gap), and that line above has no
    header key of its own right over it (a key / value grid with tight rows: the key under a
    value that its own header names is the header of the next value). Evenly spaced lists
    (key, value, key, value) stay headers: their gaps up and down are alike. The keys of one
    row are all captions or all headers (one that is not a caption makes the row a header
    row). ``fits(field, text)``: whether a text is a valid value of the key's field (the
    schema's rules); a key whose line above holds none is a header."""
    out: set[int] = set()
    for r in sorted(header_keys):  # top down: a caption above is no header (below)
        row_captions: set[int] = set()
        row_headers = 0
        for kh in header_keys[r]:
            kl = info[kh.line]
            up = _nearest_aligned(by_row.get(r - 1, []), kl)
            down = _nearest_aligned(by_row.get(r + 1, []), kl, any_line=True)
            if up is None or up.keys or any(t.keyish for t in up.tokens):
                row_headers += 1
                continue
            if fits is not None and not (
                fits(kh.field, up.text) or any(fits(kh.field, t.text) for t in up.tokens)
            ):
                row_headers += 1
                continue  # "Use by" under a nutrition line: no date there, a header
            if any(
                id(h) not in out
                and _aligned(h.x0, h.x1, up.x0, up.x1, up.h)
                and (up.y0 - info[h.line].y1) / up.h <= 2.5
                for h in header_keys.get(r - 2, [])
            ):
                row_headers += 1
                continue  # the value above already has its header key: this one is the next's
            gap_up = (kl.y0 - up.y1) / kl.h
            gap_down = math.inf if down is None else (down.y0 - kl.y1) / kl.h
            if -0.3 <= gap_up <= 1.5 and gap_up < 0.7 * gap_down:
                row_captions.add(id(kh))
            else:
                row_headers += 1
        if row_headers == 0:  # a row of keys is captions or headers, not both
            out |= row_captions
    return out


def _below_anchor(
    info: list[_Line], below_keys: list[KeyHit], line: _Line, x0: float, x1: float
) -> Anchor | None:
    """The caption key right under tokens ``x0..x1`` of ``line`` (``caption_keys``)."""
    best: tuple[float, KeyHit] | None = None
    for kh in below_keys:
        if not _aligned(kh.x0, kh.x1, x0, x1, line.h):
            continue
        ov = min(x1, kh.x1) - max(x0, kh.x0)
        score = ov / max(x1 - x0, 1.0) - 0.1 * abs(x0 - kh.x0) / line.h
        if best is None or score > best[0]:
            best = (score, kh)
    if best is None:
        return None
    kh = best[1]
    return Anchor("below", kh, 0, max(0.0, (info[kh.line].y0 - line.y1) / line.h))


def _column_anchor(
    find: Callable[..., Anchor | None],
    keys: list[KeyHit],
    info: list[_Line],
    ln: _Line,
    ids: tuple[int, ...],
) -> tuple[Anchor | None, bool]:
    """The column key ``find`` (``_above_anchor`` / ``_below_anchor``) gives the token span
    ``ids`` of ``ln``, and whether its tokens stand under (or over) different keys: then the
    span is no candidate."""
    toks = ln.tokens
    got = find(info, keys, ln, toks[ids[0]].x0, toks[ids[-1]].x1)
    if got is None:
        return None, False
    heads: set[int] = set()
    for tk in ids:
        a = find(info, keys, ln, toks[tk].x0, toks[tk].x1)
        if a is None or (a.key is not got.key and toks[tk].x1 <= a.key.x0):
            continue  # a word that ends before a key starts is in the column left of it
        heads.add(id(a.key))
    return got, len(heads) > 1


def candidates(
    info: list[_Line], fits: Callable[[str, str], bool] | None = None
) -> list[Candidate]:
    """Every token run of 1..``MAX_TOKENS`` tokens of one line that crosses no key, plus the
    whole rest of each key-free segment, with its anchor (module docstring, step 2)."""
    rows = _row_sequences(info)
    by_row: dict[int, list[_Line]] = {}
    for ln in info:
        by_row.setdefault(ln.row, []).append(ln)
    header_keys: dict[int, list[KeyHit]] = {}
    for r, lns in by_row.items():
        header_keys[r] = [kh for ln in lns for kh in ln.keys if not _key_has_value(info, rows, kh)]
    captions = caption_keys(info, by_row, header_keys, fits)
    below_keys = {r: [kh for kh in khs if id(kh) in captions] for r, khs in header_keys.items()}
    header_keys = {
        r: [kh for kh in khs if id(kh) not in captions] for r, khs in header_keys.items()
    }
    out: list[Candidate] = []
    for ln in info:
        if not ln.tokens:
            continue
        if ln.keys and all(k.field == OTHER and k.start > 0 for k in ln.keys):
            # "HYOSUNG POWER": a distractor key inside a brand name
            t0, t1 = ln.tokens[0], ln.tokens[-1]
            end = max(t1.end, max(k.end for k in ln.keys))
            out.append(
                Candidate(
                    ln.index,
                    tuple(range(len(ln.tokens))),
                    t0.start,
                    end,
                    ln.text[t0.start : end],
                    t0.x0,
                    ln.x_at(end),
                    None,
                    rest=True,
                    whole=True,
                )
            )
        # segments: token runs not interrupted by a key of this line
        segs: list[list[int]] = [[]]
        key_starts = sorted(k.start for k in ln.keys)
        for n, t in enumerate(ln.tokens):
            if segs[-1]:
                prev = ln.tokens[segs[-1][-1]]
                if any(prev.end <= ks < t.start + 1 for ks in key_starts):
                    segs.append([])
            segs[-1].append(n)
        above = header_keys.get(ln.row - 1, [])
        below = below_keys.get(ln.row + 1, [])
        for seg in segs:
            if not seg:
                continue
            foreign_lead = _foreign_lead(ln, seg)
            spans = {
                (i, j)
                for i in range(len(seg))
                for j in range(i + 1, min(len(seg), i + MAX_TOKENS) + 1)
            }
            spans.add((0, len(seg)))
            for i, j in sorted(spans):
                ids = tuple(seg[i:j])
                t0, t1 = ln.tokens[ids[0]], ln.tokens[ids[-1]]
                anchor = _left_anchor(info, rows[ln.row], (ln.index, ids[0]))
                split = False
                unknown = ids[0] > 0 and ln.tokens[ids[0] - 1].keyish
                # a caption key under the span first, then a header key over it (not over a
                # value that follows a key of its own line that we do not know: "년번: X")
                for keys, find in ((below, _below_anchor), (above, _above_anchor)):
                    if keys and not unknown and (anchor is None or anchor.kind == "far"):
                        got, split = _column_anchor(find, keys, info, ln, ids)
                        if split:
                            break
                        if got is not None:
                            anchor = got
                if split:
                    continue
                out.append(
                    Candidate(
                        ln.index,
                        ids,
                        t0.start,
                        t1.end,
                        ln.text[t0.start : t1.end],
                        t0.x0,
                        t1.x1,
                        anchor,
                        rest=j == len(seg) and (i == 0 or (i == 1 and foreign_lead)),
                        unknown_key=unknown and anchor is None,
                    )
                )
    return out + _continued(info, out)


def _continued(info: list[_Line], cands: list[Candidate]) -> list[Candidate]:
    """Candidates that go on into the next OCR line of their row when the detector cut a
    value in two (``"OCT"`` | ``"2025"``): the last one or two tokens of a line, then the first
    one or two of the line right after it (gap under 1.5 line heights, no key between)."""
    rows: dict[int, list[_Line]] = {}
    for ln in info:
        if ln.tokens:
            rows.setdefault(ln.row, []).append(ln)
    out: list[Candidate] = []
    for lns in rows.values():
        lns.sort(key=lambda ln: ln.x0)
        for a, b in zip(lns, lns[1:], strict=False):
            h = min(a.h, b.h)
            if not -0.5 <= (b.x0 - a.x1) / h <= 1.5:
                continue
            last = a.tokens[-1]
            if any(k.start >= last.end for k in a.keys):
                continue
            first = b.tokens[0]
            heads = [
                n for n, t in enumerate(b.tokens[:2]) if not any(k.start < t.start for k in b.keys)
            ]
            if not heads or heads[0] != 0 or any(k.start < first.start for k in b.keys):
                continue
            for c in cands:
                if c.line != a.index or c.whole or c.tokens[-1] != len(a.tokens) - 1:
                    continue
                if len(c.tokens) > 2:
                    continue
                for m in range(1, len(heads) + 1):
                    ids = tuple(heads[:m])
                    tail = " ".join(b.tokens[t].text for t in ids)
                    out.append(
                        replace(
                            c,
                            raw=f"{c.raw} {tail}",
                            x1=b.tokens[ids[-1]].x1,
                            rest=False,
                            cont=(b.index, ids),
                        )
                    )
    return out


# ---------------------------------------------------------------------------- scoring


def _compact(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _is_rating(tok: str) -> bool:
    t = tok.strip("()[],;")
    return bool(_UNIT_RE.match(t) or _IP_RE.match(t))


@lru_cache(maxsize=4096)
def _date_like(s: str) -> bool:
    """Whether ``s`` parses as a date (the catalogue's date field rules)."""
    if len(s) > 24 or sum(ch.isdigit() for ch in s) < 2:
        return False
    return check_value(s, KNOWN_FIELDS["mfg_date"].spec)[1]


def _kind(spec: FieldSpec) -> str:
    if spec.date is not None:
        return "date"
    if spec.name == "manufacturer":
        return "text"
    if spec.name == "model":
        return "model"
    if spec.name in CODE_FIELDS or spec.pattern or spec.format or spec.check_digit:
        return "code"
    return "text" if spec.name in KNOWN_FIELDS else "code"


class _Checker:
    """``check_value`` per (field, raw), cached for one read."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], tuple[str, bool, str]] = {}

    def __call__(self, spec: FieldSpec, raw: str) -> tuple[str, bool, str]:
        key = (spec.name, raw)
        got = self.cache.get(key)
        if got is None:
            got = check_value(raw, spec)
            self.cache[key] = got
        return got


def _gs1(digits: str) -> bool:
    return CHECK_DIGITS["gs1"].validate(digits)


def _luhn(digits: str) -> bool:
    return CHECK_DIGITS["luhn"].validate(digits)


@lru_cache(maxsize=8192)
def _text_stats(raw: str) -> tuple[str, int, int, bool]:
    """(compact value, digits, letters, a token is a rating) of a candidate's text."""
    val = _compact(raw)
    return (
        val,
        sum(ch.isdigit() for ch in val),
        sum(ch.isalpha() for ch in val),
        any(_is_rating(w) for w in raw.split()),
    )


def _shape(kind: str, name: str, c: Candidate, toks: list[Token], keyless: bool) -> float | None:
    """Field-typical shape score of a candidate (None: impossible for this field)."""
    words = [t.text for t in toks]
    val, digits, letters, rating = _text_stats(c.raw)
    n = len(val)
    s = 0.0
    if kind in ("code", "model"):
        if c.rest and len(words) > MAX_TOKENS:
            return None
        if kind == "code" and _foreign(c.raw):
            return None  # a code field holds no CJK / Hangul (a misread key, a product word)
        if rating:
            return None
        if keyless and _PHONE_RE.match(c.raw.strip()) and c.raw.lstrip()[:1] in "+(0":
            s -= 2.0  # an unkeyed phone number
        if kind == "code":
            if digits == 0 and name != "mac":
                return None if keyless else s - 2.5
            w0 = words[0]
            if len(words) > 1 and not any(ch.isdigit() for ch in w0):
                if len(w0) > 3 or not w0.isupper():
                    return None  # "ADDR 6B:4F:..": a code does not start with a word
            for w in words[1:]:
                if any(ch.isdigit() for ch in w) and (w.isdigit() or not _date_like(w)):
                    s += 0.3
                else:
                    s -= 2.0
            if name == "serial_number":
                s += 0.05 * min(max(n - 6, 0), 10)  # the serial is rarely the shortest code
                if keyless and val.isdigit() and n in (8, 12, 13, 14) and _gs1(val):
                    s -= 1.0  # an unkeyed GTIN/EAN
                if keyless and (val.isdigit() and n == 15) and _luhn(val):
                    s -= 1.0  # an unkeyed IMEI
                if n < 4:
                    s -= 3.0
                if 6 <= n <= 30:
                    s += 0.5
                if digits / max(n, 1) >= 0.3:
                    s += 0.3
                if _date_like(c.raw):
                    s -= 2.5 if keyless else 0.8
                if keyless:
                    s += 0.5 if n >= 8 else 0.0
        else:  # model: letters and digits, short words may follow ("XR 500 PRO")
            if digits == 0 and letters < 2:
                return None
            if digits == 0:
                s -= 1.0
                if not val.isupper():
                    s -= 1.5  # a word ("Manual", the next row's caption), not a type code
            for w in words[1:]:
                if any(ch.isdigit() for ch in w) or (w.isupper() and len(w) <= 6):
                    s += 0.1
                else:
                    s -= 1.5
    elif kind == "date":
        if digits == 0:
            return None
        if len(words) > 1:
            s += 0.1 * (len(words) - 1)
    else:  # free text: the rest of the line after the key
        if letters < 2:
            return None
        if not c.rest:
            s -= 0.6
    return s


def _fits(specs: list[FieldSpec]) -> Callable[[str, str], bool]:
    """``fits(field, text)`` for ``candidates``: the text passes the field's rules (a field
    the schema does not hold, a distractor key's: any text fits)."""
    by_name = {s.name: s for s in specs}
    check = _Checker()

    def fits(field: str, text: str) -> bool:
        spec = by_name.get(field)
        return spec is None or check(spec, text)[1]

    return fits


def _standard_ref(info: list[_Line], c: Candidate) -> bool:
    """Whether an unkeyed candidate is (part of) a standard's number: "IEC 60947-2",
    "EN 60204-1" and the like, or the number right after such a body's name."""
    toks = info[c.line].tokens
    first = c.tokens[0]
    word = toks[first].text.upper()
    if word in _STANDARD_BODIES and len(c.tokens) > 1:
        return toks[c.tokens[1]].text[:1].isdigit()
    return first > 0 and toks[first - 1].text.upper() in _STANDARD_BODIES and word[:1].isdigit()


def _line_h_rel(info: list[_Line], line: int) -> float:
    """Line height over the median line height of the label."""
    return info[line].h_rel


@dataclass
class _Pair:
    score: float
    field: str
    cand: Candidate
    value: str
    valid: bool
    reason: str
    keyless: bool


def score_pairs(
    info: list[_Line], cands: list[Candidate], specs: list[FieldSpec], keyless: frozenset[str]
) -> list[_Pair]:
    """Every plausible (field, candidate) pair with its score (module docstring, step 3)."""
    check = _Checker()
    pairs: list[_Pair] = []
    names = {s.name for s in specs}
    for spec in specs:
        kind = _kind(spec)
        for c in cands:
            a = c.anchor
            is_keyless = False
            if a is not None and a.key.field != spec.name:
                if (
                    a.kind != "far"
                    or a.between <= 1
                    or (a.key.field == OTHER and (a.key.line == c.line or a.between <= c.tokens[0]))
                ):
                    # claimed by another key ("Tel +49 711 123456": all of it, also when the
                    # number is a line of its own right of the key)
                    continue
                a = None
            if a is None:
                if spec.name not in keyless and spec.name != "manufacturer":
                    continue
                is_keyless = True
            if kind == "text" and spec.name != "manufacturer" and not c.rest:
                continue
            if c.whole and not (is_keyless and spec.name == "manufacturer"):
                continue
            if c.cont is not None and kind != "date":
                continue  # codes: the next cell is too often another value
            toks = c.token_list(info)
            shape = _shape(kind, spec.name, c, toks, is_keyless)
            if shape is None:
                continue
            value, valid, reason = check(spec, c.raw)
            if not value:
                continue
            if is_keyless:
                if spec.name == "manufacturer":
                    s = _header_score(info, c)
                    if s is None:
                        continue
                else:
                    if not valid or _standard_ref(info, c):
                        continue
                    s = W_VALID + shape
                    if c.unknown_key:
                        s -= 1.0  # probably the value of a key we do not know
                    if any(t.keyish for t in toks):
                        continue
                    if spec.name == "serial_number":
                        s += max(-0.5, min(1.0, 1.5 * (_line_h_rel(info, c.line) - 1.0)))
                    if spec.check_digit or spec.format:
                        s += 1.5
            else:
                assert a is not None
                s = W_ANCHOR[a.kind] * a.key.strength - W_BETWEEN * a.between
                s -= 0.1 * min(a.gap, 10.0)
                s += (W_VALID if valid else W_INVALID) + shape
                if a.key.field == spec.name and spec.name not in names:
                    continue
            pairs.append(_Pair(s, spec.name, c, value, valid, reason, is_keyless))
    return pairs


def _foreign_lead(ln: _Line, seg: Sequence[int]) -> bool:
    """The segment starts with one word of Hangul / CJK and goes on in Latin letters
    (``제조 Broven Elektro S.p.A.``: a maker key the reader damaged, ``제조`` for 제조사, before
    a Latin name): that word is no part of the name."""
    if len(seg) < 2:
        return False
    first = ln.tokens[seg[0]]
    word = ln.text[first.start : first.end]
    rest = ln.text[first.end : ln.tokens[seg[-1]].end]
    return all(_is_cjk(ch) for ch in word) and any(ch.isascii() and ch.isalpha() for ch in rest)


def _header_score(info: list[_Line], c: Candidate) -> float | None:
    """A keyless manufacturer: a whole top line of letters, tall, company-like (after one
    leading Hangul / CJK word when the name is Latin, ``_foreign_lead``)."""
    ln = info[c.line]
    if not c.rest or c.end < len(ln.text.rstrip()) - 1:
        return None
    lead = _foreign_lead(ln, range(len(ln.tokens)))
    if c.start > 0 and not (lead and c.tokens[0] == 1):
        return None
    if c.start == 0 and lead:
        return None  # the name starts after the foreign word
    if ln.keys and not c.whole:
        return None
    val = c.raw
    letters = sum(ch.isalpha() for ch in val)
    digits = sum(ch.isdigit() for ch in val)
    if letters < 3 or digits > 2:
        return None
    top = min(x.y0 for x in info)
    bottom = max(x.y1 for x in info)
    rel_y = (ln.y0 - top) / max(bottom - top, 1.0)
    company = bool(_COMPANY_RE.search(val))
    if rel_y > 0.3 and not company:
        return None
    s = -0.5 if rel_y <= 0.3 else -1.0
    if company:
        s += 1.8
    if _PRODUCT_WORDS.search(val):
        s -= 2.0
    if _line_h_rel(info, c.line) > 1.15:
        s += 1.0
    if ln.row == 0:
        s += 0.5
    return s


def assign(pairs: list[_Pair]) -> dict[str, _Pair]:
    """Greedy joint assignment: best pair first, one candidate per field, one field per token."""
    chosen: dict[str, _Pair] = {}
    used: set[tuple[int, int]] = set()
    for p in sorted(pairs, key=lambda p: -p.score):
        if p.score < ACCEPT or p.field in chosen:
            continue
        ids = p.cand.ids
        if ids & used:
            continue
        chosen[p.field] = p
        used |= ids
    return chosen


def _confidence(p: _Pair, pairs: list[_Pair], chosen: dict[str, _Pair]) -> float:
    """Extraction confidence of an assigned pair (module docstring, step 4)."""
    taken = {i for q in chosen.values() if q is not p for i in q.cand.ids}
    rivals = [
        q
        for q in pairs
        if q.field == p.field
        and q.value != p.value
        and not (q.cand.ids & p.cand.ids)
        and not (q.cand.ids & taken)
    ]
    if p.keyless:
        if p.field == "manufacturer":
            return 0.9 if p.score >= 1.8 else 0.45
        spec_precise = p.field in ("imei", "gtin") or (p.field == "mac" and _mac_shaped(p.cand.raw))
        conf = CONF_KEYLESS_PRECISE if spec_precise else CONF_KEYLESS
        if any(q.score > p.score - 1.5 for q in rivals):
            conf = min(conf, CONF_KEYLESS_AMBIGUOUS)
        return conf
    a = p.cand.anchor
    assert a is not None
    conf = CONF[a.kind] * (
        1.0 if a.key.strength >= 1.0 else 0.95 if a.key.strength >= 0.8 else 0.85
    )
    if not p.valid:
        conf = min(conf, CONF_INVALID)
    if any((not q.keyless) and q.score > p.score - 1.5 and q.valid for q in rivals):
        conf *= CONF_CONFLICT
    return conf


def _mac_shaped(raw: str) -> bool:
    """Whether an unkeyed value looks like a MAC address by itself: octets split by ":" or
    "-", or a hex letter among its 12 characters. Twelve bare decimal digits pass the MAC rule
    as well, but are far more often another number (a serial, an order or phone number)."""
    v = raw.strip()
    if re.fullmatch(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}", v):
        return True
    return any(ch in "abcdefABCDEF" for ch in v)


def _span_box(line: TextLine, cum: list[float], start: int, end: int) -> Polygon:
    """Axis-aligned pixel quad of chars ``start:end`` interpolated along the line polygon."""
    pts = [(float(x), float(y)) for x, y in line.polygon]
    half = len(pts) // 2
    top, bottom = pts[:half], list(reversed(pts[half:]))
    if len(top) < 2 or len(bottom) < 2:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return ((min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)))
    total = cum[-1] or 1.0
    t0, t1 = cum[start] / total, cum[end] / total

    def at(edge: list[tuple[float, float]], t: float) -> tuple[float, float]:
        (ax, ay), (bx, by) = edge[0], edge[-1]
        return (ax + t * (bx - ax), ay + t * (by - ay))

    q = [at(top, t0), at(top, t1), at(bottom, t1), at(bottom, t0)]
    xs, ys = [p[0] for p in q], [p[1] for p in q]
    return ((min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)))


# ---------------------------------------------------------------------------- the stage


class RankerFieldExtractor:
    """Candidate-ranking field extractor (``FieldExtractor`` interface; module docstring).

    ``transformer``: a zero-argument callable that builds the extractor for free-text receipt
    fields (default: ``TransformerFieldExtractor()``); called once, on the first read whose
    schema has such a field. ``exclude_keys``: keys left out of the vocabulary (evaluation of
    keys the extractor has never seen; never in production). ``use_transformer``: required
    fields of ``LEARNED_FIELDS`` that no key names are ranked by the transformer's per-word probability
    among the candidates no key claims and no field took (probability >= ``LEARNED_MIN_PROB``,
    the field's rules passed; confidence ``CONF_LEARNED`` x the probability, so such a value
    always goes to review; keys always win: this only fills what the keys left empty).
    """

    RECEIPT = frozenset(n for n, k in KNOWN_FIELDS.items() if k.document == "receipt")

    def __init__(
        self,
        transformer: Callable[[], Any] | None = None,
        *,
        exclude_keys: frozenset[str] = frozenset(),
        use_transformer: bool = False,
        receipt: str = "rules",
    ) -> None:
        if receipt not in RECEIPT_MODES:
            raise ValueError(f"receipt must be one of {RECEIPT_MODES}, not {receipt!r}")
        self.receipt = receipt
        self._make_transformer = transformer
        self.use_transformer = use_transformer
        self.exclude_keys = frozenset(key_norm(k) for k in exclude_keys)
        self._transformer: Any = None
        self._lock = threading.Lock()
        self.model_info: ModelInfo | None = ModelInfo(
            stage="fields", name="ranker-field-extractor", version=RANKER_VERSION, sha256=None
        )

    @classmethod
    def from_config(cls, config: Any) -> RankerFieldExtractor:
        """The ranker a ``PipelineConfig`` asks for (``OCR_RANKER_TRANSFORMER``; its
        transformer from ``TransformerFieldExtractor.from_config``)."""

        def make() -> Any:
            from .extractor import TransformerFieldExtractor

            return TransformerFieldExtractor.from_config(config)

        return cls(transformer=make, use_transformer=bool(config.ranker_transformer))

    def transformer(self) -> Any:
        with self._lock:
            if self._transformer is None:
                if self._make_transformer is not None:
                    self._transformer = self._make_transformer()
                else:
                    from .extractor import TransformerFieldExtractor

                    self._transformer = TransformerFieldExtractor()
            return self._transformer

    def explain(self, lines: list[TextLine], schema: Any) -> dict[str, Any]:
        """The intermediate results (keys, candidates, pairs, assignment) for debugging."""
        ps = resolve_schema(schema)
        specs = [s for s in ps.fields if s.name not in self.RECEIPT]
        info, cands, pairs = self._rank(lines, ps, specs)
        return {"lines": info, "candidates": cands, "pairs": pairs, "chosen": assign(pairs)}

    def __call__(
        self, lines: list[TextLine], schema: dict[str, Any] | ProductSchema | None
    ) -> list[FieldResult]:
        ps = resolve_schema(schema)
        label_specs = [s for s in ps.fields if s.name not in self.RECEIPT]
        receipt_specs = [s for s in ps.fields if s.name in self.RECEIPT]
        results: dict[str, FieldResult] = {}
        if receipt_specs and lines:
            if self.receipt == "transformer":
                sub = replace(ps, fields=tuple(receipt_specs))
                for r in self.transformer()(lines, sub):
                    results[r.name] = r
            else:
                results.update(extract_receipt(lines, receipt_specs))
        if label_specs and lines:
            results.update(self._label_fields(lines, ps, label_specs))
        out: list[FieldResult] = []
        for spec in ps.fields:
            got = results.get(spec.name)
            if got is not None and got.value:
                out.append(got)
            elif spec.required:
                out.append(got if got is not None else missing_required(spec.name))
        return out

    def _rank(
        self, lines: list[TextLine], ps: ProductSchema, specs: list[FieldSpec]
    ) -> tuple[list[_Line], list[Candidate], list[_Pair]]:
        """Lines analysed with the schema's vocabulary, their candidate values, and every
        (field, candidate) pair scored: what ``assign`` chooses from."""
        info = analyse(lines, schema_vocabulary(ps, self.exclude_keys))
        cands = candidates(info, _fits(specs))
        return info, cands, score_pairs(info, cands, specs, ps.keyless)

    def _label_fields(
        self, lines: list[TextLine], ps: ProductSchema, specs: list[FieldSpec]
    ) -> dict[str, FieldResult]:
        info, cands, pairs = self._rank(lines, ps, specs)
        chosen = assign(pairs)
        learned: dict[str, float] = {}
        if self.use_transformer:
            learned = self._unkeyed_by_transformer(lines, info, cands, specs, chosen)
        out: dict[str, FieldResult] = {}
        by_name = {s.name: s for s in specs}
        for name, p in chosen.items():
            conf = learned[name] if name in learned else _confidence(p, pairs, chosen)
            spec = by_name[name]
            if (
                p.keyless
                and conf < UNKEYED_MIN
                and not spec.required
                and spec.date is None
                and name not in GUESSES_KEPT
            ):
                continue  # a guess for an optional field (UNKEYED_MIN)
            c = p.cand
            line = lines[c.line]
            out[name] = FieldResult(
                name=name,
                raw_value=c.raw,
                value=p.value,
                confidence=conf * float(line.confidence),
                extraction_confidence=conf,
                line_index=c.line,
                box=_span_box(line, info[c.line].cum, c.start, c.end),
                valid=p.valid,
                reason="" if p.valid else (p.reason or "empty value"),
            )
        return out

    def _unkeyed_by_transformer(
        self,
        lines: list[TextLine],
        info: list[_Line],
        cands: list[Candidate],
        specs: list[FieldSpec],
        chosen: dict[str, _Pair],
    ) -> dict[str, float]:
        """Fields that no key names (part number, lot, model on a label without keys): the
        transformer's per-word field probability ranks the candidates that no key claims and
        no field took. Adds to ``chosen`` in place; returns their confidences (half the
        probability: such a value always goes to review)."""
        tfx = self.transformer()
        names = set(getattr(tfx, "fields", ()))
        todo = [  # its confidence is under UNKEYED_MIN: only a required field keeps it
            s
            for s in specs
            if s.required and s.name not in chosen and s.name in names and s.name in LEARNED_FIELDS
        ]
        free = [c for c in cands if c.anchor is None and not c.whole and not c.unknown_key]
        if not todo or not free:
            return {}
        from .extractor.layout import words_from_lines

        words = words_from_lines([(ln.text, ln.polygon) for ln in lines])
        if not words:
            return {}
        probs = tfx.word_probs(words)
        labels = list(tfx.labels)
        by_line: dict[int, list[int]] = {}
        for k, w in enumerate(words):
            by_line.setdefault(w.line_index, []).append(k)
        used = {i for p in chosen.values() for i in p.cand.ids}
        check = _Checker()
        extra: list[_Pair] = []
        for spec in todo:
            b, i = labels.index("B-" + spec.name), labels.index("I-" + spec.name)
            kind = _kind(spec)
            for c in free:
                if c.ids & used:
                    continue
                ks = [
                    k
                    for k in by_line.get(c.line, ())
                    if words[k].start < c.end and c.start < words[k].end
                ]
                if not ks:
                    continue
                prob = sum(float(probs[k, b] + probs[k, i]) for k in ks) / len(ks)
                if prob < LEARNED_MIN_PROB:
                    continue
                toks = c.token_list(info)
                if _shape(kind, spec.name, c, toks, True) is None:
                    continue
                value, valid, reason = check(spec, c.raw)
                if value and valid:
                    extra.append(_Pair(prob, spec.name, c, value, valid, reason, True))
        got: dict[str, float] = {}
        for p in sorted(extra, key=lambda p: -p.score):
            if p.field in chosen or p.cand.ids & used:
                continue
            chosen[p.field] = p
            used |= p.cand.ids
            got[p.field] = CONF_LEARNED * p.score
        return got
