"""Receipt fields from text lines: company, date, address, total (the SROIE entities).

Used by the ranker (``ranker.RankerFieldExtractor``) for the catalogue's ``document="receipt"``
fields. Every keyword comes from the resolved schema at run time (``FieldSpec.keywords``; the
catalogue's defaults are the vocabulary of ``workers.fieldspec.receipt``), so a product type
that names its own keys (``JUMLAH`` for the total) changes what is found without any change
here. The rules are the layout of a printed receipt, not of one shop:

- **company**: among the first header lines, the first that holds a company keyword (legal
  form or trade word); a line that is only the legal form (``CO. (M) SDN BHD``) takes the line
  above it; what follows the last keyword is cut when it holds digits (a registration number
  ``(1248717-W)``). Without a keyword: the first header line that is mostly letters and not a
  document title (``HEADER_NOISE``).
- **address**: the lines after the company, registration-number lines skipped, from the first
  line with an address keyword, a house number or a postcode, up to a stop line (phone, fax,
  tax registration, document title, a date: ``ADDRESS_STOP_KEYS``); the line with the postcode
  ends it, followed at most by one short line without digits (the state). Lines joined with
  one space.
- **date**: every date-shaped span (day/month/year in numbers or with a month name, ISO), with
  a plausible day and month; one after a date key wins, else the first. Returned as printed.
- **total**: amounts after a total key (same line, the next cell of the row, or the line below
  the key), the key ranked by ``TOTAL_KEY_RANK`` (rounded / grand / nett total over a plain
  total); keys of other sums (``NOT_TOTAL_KEYS``: subtotal, tax, cash, change...) claim their
  line. Among the best-ranked the largest amount. Without any key: the largest amount printed
  at least twice, else none. Returned as printed: a currency prefix glued to the number
  (``RM20.40``, ``$8.20``) is kept, one separated by a space is not.

Confidence (``extraction_confidence``): 0.9 for a keyed date or total and a company with a
keyword, 0.8 for an address with a postcode, 0.5 and less for the fallbacks (always review).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from workers.fieldspec.catalogue import spec_for
from workers.fieldspec.grammar import FieldSpec, normalise
from workers.fieldspec.receipt import (
    ADDRESS_STOP_KEYS,
    HEADER_NOISE,
    LEGAL_FORMS,
    NOT_TOTAL_KEYS,
    PAYMENT_KEYS,
    REGISTRATION_KEYS,
    TOTAL_KEY_RANK,
)

from .fields import check_value
from .types import FieldResult, TextLine

__all__ = ["RECEIPT_FIELDS", "extract_receipt", "flat"]

RECEIPT_FIELDS = ("company", "date", "address", "total")
HEADER_LINES = 10  # how far down the company is looked for
ADDRESS_MAX_LINES = 6
DEFAULT_TOTAL_RANK = TOTAL_KEY_RANK.get("TOTAL", 2)

_FLAT_DROP = re.compile(r"[.:,;()\[\]{}*#=_|'\"~-]+")


def flat(text: str) -> str:
    """Upper case, punctuation to spaces, single spaces: the form keys are matched in."""
    return " ".join(_FLAT_DROP.sub(" ", text.upper()).split())


@lru_cache(maxsize=256)
def _key_re(keys: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = sorted({flat(k) for k in keys if flat(k)}, key=len, reverse=True)
    if not forms:
        return None
    alt = "|".join(re.escape(f).replace(r"\ ", r"\s*") for f in forms)
    return re.compile(rf"(?<![A-Z0-9])(?:{alt})(?![A-Z0-9])")


@dataclass(frozen=True)
class _Line:
    index: int
    text: str
    flat: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def h(self) -> float:
        return max(self.y1 - self.y0, 1.0)


def _lines(lines: list[TextLine]) -> list[_Line]:
    out = []
    for i, ln in enumerate(lines):
        if not ln.text.strip():
            continue
        pts = ln.polygon or ((0.0, float(i)), (1.0, float(i) + 1.0))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        out.append(_Line(i, ln.text.strip(), flat(ln.text), min(xs), min(ys), max(xs), max(ys)))
    return out


def _same_row(a: _Line, b: _Line) -> bool:
    return abs(a.cy - b.cy) <= 0.5 * max(a.h, b.h)


# ---------------------------------------------------------------------------- total

_AMOUNT = re.compile(
    r"(?<![\w.,/-])(?:(RM|MYR|S\$|US\$|\$|€|£)(\s*))?(\d{1,3}(?:,\d{3})+|\d+)([.,]\d{2})(?![\d.,]*\d)"
)


def _amounts(text: str) -> list[tuple[int, str, float]]:
    """``(start, value as printed, number)`` of each money amount in ``text``."""
    out = []
    for m in _AMOUNT.finditer(text.upper()):
        cur, space, whole, cents = m.groups()
        number = float(whole.replace(",", "") + "." + cents[1:])
        num_text = text[m.start(3) : m.end(4)]
        value = text[m.start(1) : m.end(4)] if cur and not space else num_text
        out.append((m.start(), value, number))
    return out


def _first_key(text_flat: str, total_re: re.Pattern[str] | None, not_re: re.Pattern[str] | None):
    """The leftmost key of the line: ``("total", match)``, ``("other", match)`` or None."""
    best = None
    for kind, rx in (("total", total_re), ("other", not_re)):
        if rx is None:
            continue
        m = rx.search(text_flat)
        if m is None:
            continue
        if (
            best is None
            or m.start() < best[1].start()
            or (m.start() == best[1].start() and len(m.group()) > len(best[1].group()))
        ):
            best = (kind, m)
    return best


def _total(ls: list[_Line], spec: FieldSpec) -> tuple[str, _Line, float] | None:
    keys = tuple(spec.keywords)
    total_re, not_re = _key_re(keys), _key_re(NOT_TOTAL_KEYS)
    rank = {flat(k): TOTAL_KEY_RANK.get(flat(k), DEFAULT_TOTAL_RANK) for k in keys}
    amounts = {ln.index: _amounts(ln.text) for ln in ls}
    pay_re = _key_re(PAYMENT_KEYS)
    keyed: list[tuple[int, float, str, _Line]] = []
    claimed: set[int] = set()  # lines whose amount belongs to a key
    paid: set[int] = set()  # ... to a payment or change key
    for ln in ls:
        got = _first_key(ln.flat, total_re, not_re)
        if got is None:
            continue
        kind, m = got
        key_rank = rank.get(" ".join(m.group().split()), DEFAULT_TOTAL_RANK)
        value = _value_for_key(ln, ls, amounts, claimed, below=kind == "other" or key_rank > 1)
        if value is None:
            continue
        _, val, number, at = value
        claimed.add(at.index)
        if kind == "total":
            keyed.append((key_rank, number, val, at))
        elif pay_re is not None and pay_re.fullmatch(m.group()):
            paid.add(at.index)
    if keyed:
        best = max(r for r, *_ in keyed)
        top = [k for k in keyed if k[0] == best]
        _, number, val, at = max(top, key=lambda k: k[1])
        rounded = _rounded_below(ls, amounts, number, at)
        if rounded is not None:
            val, at = rounded
        chosen = _amounts(val)[0][2] if _amounts(val) else number
        others = {
            n for r, n, _, _ in keyed if r >= DEFAULT_TOTAL_RANK and abs(n - chosen) > 0.1 + 1e-9
        }
        # 0.9 only when every keyed total agrees (up to cash rounding)
        return val, at, 0.9 if best >= DEFAULT_TOTAL_RANK and not others else 0.7
    counts: dict[float, list[tuple[str, _Line]]] = {}
    for ln in ls:
        if ln.index in paid:
            continue
        for _, val, number in amounts[ln.index]:
            counts.setdefault(number, []).append((val, ln))
    repeated = [n for n, occ in counts.items() if len(occ) >= 2 and n > 0]
    if not repeated:
        return None
    val, at = counts[max(repeated)][0]
    return val, at, 0.4


def _rounded_below(
    ls: list[_Line], amounts: dict[int, list[tuple[int, str, float]]], number: float, at: _Line
) -> tuple[str, _Line] | None:
    """The rounded form of the total ``number`` printed below it (cash rounding to 0.05: a
    "rounding adjustment" line then the amount paid), the nearest one; None when ``number``
    is already rounded or no such amount follows."""
    if _cents(number) % 5 == 0:
        return None
    near = [
        (ln.cy, val, ln)
        for ln in ls
        if 0 < ln.cy - at.cy <= 8 * at.h
        for _, val, a in amounts[ln.index]
        if a != number and abs(a - number) <= 0.1 + 1e-9 and _cents(a) % 5 == 0
    ]
    if not near:
        return None
    _, val, ln = min(near, key=lambda t: t[0])
    return val, ln


def _cents(number: float) -> int:
    return round(number * 100)


def _value_for_key(
    key: _Line,
    ls: list[_Line],
    amounts: dict[int, list[tuple[int, str, float]]],
    claimed: set[int],
    *,
    below: bool = True,
) -> tuple[int, str, float, _Line] | None:
    """The amount a key line names: on the line itself, else the nearest cell to its right
    in the same row, else (``below``) the nearest line below it (within two line heights)
    that holds little more than an amount (no item line)."""
    own = amounts[key.index]
    if own:
        return (*own[-1], key)
    row = [
        ln
        for ln in ls
        if ln.index != key.index and _same_row(ln, key) and ln.x0 >= key.x1 - 0.5 * key.h
    ]
    priced = [ln for ln in row if amounts[ln.index]]
    if priced:
        ln = min(priced, key=lambda ln: ln.x0)
        return (*amounts[ln.index][0], ln)
    if row or not below:  # the row holds this key's value, and it is no amount ("TOTAL ITEMS : 2")
        return None
    not_re = _key_re(NOT_TOTAL_KEYS)
    below = [
        ln
        for ln in ls
        if amounts[ln.index]
        and ln.index not in claimed
        and 0 < ln.cy - key.cy <= 2.2 * key.h
        and ln.x1 >= key.x0
        and sum(c.isalpha() for c in ln.text) <= 3
        and _first_key(ln.flat, None, not_re) is None
    ]
    if below:
        ln = min(below, key=lambda ln: ln.cy)
        return (*amounts[ln.index][0], ln)
    return None


# ---------------------------------------------------------------------------- date

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC"
_DATE = re.compile(
    r"(?<![\w/.-])(?:"
    r"(?P<d1>\d{1,2})(?P<s1>[/.-])(?P<m1>\d{1,2})(?P=s1)(?P<y1>\d{4}|\d{2})"
    r"|(?P<y2>\d{4})(?P<s2>[/.-])(?P<m2>\d{1,2})(?P=s2)(?P<d2>\d{1,2})"
    rf"|(?P<d3>\d{{1,2}})(?P<s3>[\s/.-]?)(?P<m3>{_MONTHS})[A-Z]*\.?(?P=s3)\s*,?\s*(?P<y3>\d{{4}}|\d{{2}})"
    rf"|(?P<m4>{_MONTHS})[A-Z]*\.?\s*(?P<d4>\d{{1,2}})(?:ST|ND|RD|TH)?,?\s*(?P<y4>\d{{4}})"
    r")(?![\d/]|[.-]\d)",
    re.IGNORECASE,
)


def _has_date(text: str) -> bool:
    """Whether a header line prints a date (one glued to a word, ``21/05/2018TIME:``, counts
    for the date field only)."""
    return any(
        _plausible(m) and not text[m.end() : m.end() + 1].isalpha() for m in _DATE.finditer(text)
    )


def _plausible(m: re.Match[str]) -> float:
    """0 for no date; else how date-like: a day-first numeric date or one with a month name
    or a four-digit year counts more than a month-first one or a time-like ``11-22-31``."""
    g = m.groupdict()
    if g["d1"]:
        a, b = int(g["d1"]), int(g["m1"])
        if not (1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12):
            return 0.0
        return 0.5 + (0.3 if b <= 12 else 0.0) + (0.2 if len(g["y1"]) == 4 else 0.0)
    if g["y2"]:
        return 1.0 if 1 <= int(g["m2"]) <= 12 and 1 <= int(g["d2"]) <= 31 else 0.0
    day = g["d3"] or g["d4"]
    return 1.0 if 1 <= int(day) <= 31 else 0.0


def _date(ls: list[_Line], spec: FieldSpec) -> tuple[str, _Line, float] | None:
    key_re = _key_re(tuple(spec.keywords))
    keyed_rows = [ln for ln in ls if key_re is not None and key_re.search(ln.flat)]
    best: tuple[float, int, str, _Line] | None = None
    for order, ln in enumerate(ls):
        for m in _DATE.finditer(ln.text):
            shape = _plausible(m)
            if not shape:
                continue
            keyed = any(
                k.index == ln.index
                and key_re is not None
                and (km := key_re.search(ln.flat)) is not None
                and km.start() <= len(flat(ln.text[: m.start()]))
                or (k.index != ln.index and _same_row(k, ln) and k.x1 <= ln.x0 + k.h)
                for k in keyed_rows
            )
            score = (1.0 if keyed else 0.0) + 0.5 * shape
            if best is None or score > best[0]:
                best = (score, order, m.group().strip(), ln)
    if best is None:
        return None
    score, _, value, ln = best
    return value, ln, 0.9 if score >= 1.0 else 0.6


# ---------------------------------------------------------------------------- company, address

_POSTCODE = re.compile(r"(?<![\d-])\d{5}(?![\d-])")
_REG_NUMBER = re.compile(r"^\(?[^A-Z]*\d{4,}[^()]*\)?$")  # "(1074617K)", "(139386 X)"


_REG_TOKEN = re.compile(r"(?<![A-Z0-9])[A-Z]{0,4}\d{4,}\s?-?\s?[A-Z]{1,3}(?![A-Z0-9])")
_UNIT_BEFORE = re.compile(r"(?:\bLOT|\bNO|\bPTD?|P\.T|\bUNIT)\W*$", re.IGNORECASE)


def _postcode(text: str) -> re.Match[str] | None:
    """The first five-digit postcode of ``text`` (not a lot or house number: ``LOT 26151``)."""
    for m in _POSTCODE.finditer(text):
        if not _UNIT_BEFORE.search(text[: m.start()]):
            return m
    return None


def _is_registration(ln: _Line, reg_re: re.Pattern[str] | None) -> bool:
    """A company registration number line: a registration key (``CO-REG``, ``ROC``), a bare
    number (``(1074617K)``), or a code with a letter suffix (``JM0292487-D``, ``BR NO.:
    (124525-H)``) with at most four letters beside it."""
    if reg_re is not None and reg_re.search(ln.flat):
        return True
    t = ln.text.strip()
    if _REG_NUMBER.match(t) and sum(c.isalpha() for c in t) <= 3:
        return True
    m = _REG_TOKEN.search(t.upper())
    if m is None:
        return False
    rest = t[: m.start()] + t[m.end() :]
    return sum(c.isalpha() for c in rest) <= 4 and not any(c.isdigit() for c in rest)


def _letters_share(text: str) -> float:
    s = [c for c in text if c.isalnum()]
    return sum(c.isalpha() for c in s) / len(s) if s else 0.0


def _company(
    ls: list[_Line], spec: FieldSpec, address_keys: tuple[str, ...]
) -> tuple[str, list[_Line], float] | None:
    key_re = _key_re(tuple(spec.keywords))
    legal_re = _key_re(LEGAL_FORMS)
    noise_re = _key_re(HEADER_NOISE)
    stop_re = _key_re(ADDRESS_STOP_KEYS)
    reg_re = _key_re(REGISTRATION_KEYS)
    addr_re = _key_re(address_keys)
    head = ls[:HEADER_LINES]

    def name_like(ln: _Line) -> bool:
        if key_re is None or not key_re.search(ln.flat):
            if _address_start(ln, addr_re):
                return False
        return (
            len(ln.flat) >= 3
            and _letters_share(_cut_registration(ln.text, key_re)) >= 0.6
            and not (noise_re is not None and noise_re.search(ln.flat))
            and not (stop_re is not None and stop_re.search(ln.flat))
            and not (_is_registration(ln, reg_re) and not (legal_re and legal_re.search(ln.flat)))
            and not _has_date(ln.text)
        )

    best: tuple[float, int] | None = None
    seen = 0
    first_i = -1
    for i, ln in enumerate(head):
        if not name_like(ln):
            continue
        if first_i < 0:
            first_i = i
        score = 1.0 - 0.6 * seen
        if legal_re is not None and legal_re.search(ln.flat):
            score += 2.0
        elif key_re is not None and key_re.search(ln.flat):
            score += 1.5
        nxt = head[i + 1] if i + 1 < len(head) else None
        if nxt is not None and (_is_registration(nxt, reg_re) or _address_start(nxt, addr_re)):
            score += 1.0
        seen += 1
        if best is None or score > best[0]:
            best = (score, i)
    if best is None:
        return None
    score, i = best
    ln = head[i]
    parts = [ln]
    text = _cut_registration(ln.text, key_re)
    nxt = head[i + 1] if i + 1 < len(head) else None
    has_legal = legal_re is not None and legal_re.search(flat(text)) is not None
    if (
        not has_legal
        and nxt is not None
        and legal_re is not None
        and legal_re.search(nxt.flat)
        and name_like(nxt)
    ):
        parts.append(nxt)
        text = text + " " + _cut_registration(nxt.text, key_re)
    else:
        first = i
        while (
            first > 0
            and first > i - 2
            and _continues(head[first], key_re)
            and name_like(head[first - 1])
            and not any(c.isdigit() for c in head[first - 1].text)
        ):
            first -= 1
            parts.insert(0, head[first])
            text = head[first].text + " " + text
    # 0.9 for a legal form on the first name-like header line, 0.7 for another keyed line
    legal = legal_re is not None and legal_re.search(flat(text)) is not None
    conf = (
        0.9 if legal and parts[0].index == head[first_i].index else (0.7 if score >= 2.5 else 0.5)
    )
    return " ".join(text.split()), parts, conf


def _continues(ln: _Line, key_re: re.Pattern[str] | None) -> bool:
    """Whether a company line continues the line above it: it starts with "&", or nothing
    name-like stands before its first keyword (``CO. (M) SDN BHD``, ``BAKERY``)."""
    if ln.flat.startswith(("&", "AND ")):
        return True
    head = ln.text.split("(")[0]
    if ")" in head:  # "ALAM) SDN BHD": the parenthesis opened on the line above
        return True
    m = key_re.search(ln.flat) if key_re is not None else None
    if m is None:
        return False
    words = [w for w in ln.flat[: m.start()].split() if w not in ("CO", "M", "THE")]
    return not any(sum(c.isalnum() for c in w) >= 2 for w in words)


def _cut_registration(text: str, key_re: re.Pattern[str] | None) -> str:
    """``text`` without what follows its last keyword when that holds digits, and without a
    trailing parenthesised number (``BOON SENG PAPER SDN BHD (1248717-W)``)."""
    ms = list(key_re.finditer(flat(text))) if key_re is not None else []
    if ms:
        cut = _cut_after(text, ms[-1].end())
        if cut is not None and text[cut : cut + 1] == ".":
            cut += 1  # "BHD." keeps its dot
        if cut is not None and any(c.isdigit() for c in text[cut:]):
            text = text[:cut]
    text = re.sub(r"\s*\([^()]*\d{3,}[^()]*\)?\s*$", "", text)
    return text.rstrip(" ,;:-")


def _address_start(ln: _Line, key_re: re.Pattern[str] | None) -> bool:
    if sum(c.isalpha() for c in ln.text) < 3:  # an amount, a number: no street
        return False
    return bool(
        (key_re is not None and key_re.search(ln.flat))
        or re.match(r"^\W*\d", ln.text)
        or _postcode(ln.text)
    )


def _cut_after(text: str, flat_end: int) -> int | None:
    """The position in ``text`` after the character that ends at ``flat_end`` in its flat form."""
    for k in range(1, len(text) + 1):
        if len(flat(text[:k])) >= flat_end:
            return k
    return None


def _address(ls: list[_Line], spec: FieldSpec, after: int) -> tuple[str, list[_Line], float] | None:
    key_re = _key_re(tuple(spec.keywords))
    stop_re = _key_re(ADDRESS_STOP_KEYS)
    reg_re = _key_re(REGISTRATION_KEYS)
    parts: list[_Line] = []
    postcode = False
    skipped = 0
    for ln in ls[after:]:
        if _is_registration(ln, reg_re):
            if parts:
                break
            continue
        stop = stop_re is not None and stop_re.search(ln.flat) is not None
        if stop or _has_date(ln.text):
            if parts:
                break
            skipped += 1  # a tax number or the date between the name and the address
            if skipped > 3:
                break
            continue
        if postcode:  # one line after the postcode line: the state, or a branch's area
            if _continues_address(parts[-1], ln, key_re):
                parts.append(ln)
            break
        if not parts:
            if not _address_start(ln, key_re):
                skipped += 1
                if skipped > 2:
                    break
                continue
        parts.append(ln)
        if _postcode(ln.text):
            postcode = True
        if len(parts) >= ADDRESS_MAX_LINES:
            break
    if not parts:
        return None
    text = " ".join(" ".join(p.text.split()) for p in parts)
    return text, parts, 0.8 if postcode else 0.5


def _continues_address(post: _Line, ln: _Line, key_re: re.Pattern[str] | None) -> bool:
    """Whether ``ln`` still belongs to an address whose postcode line is ``post``: a line
    with an address keyword (a branch's area ``1237-TMN INDAH``); a line without digits when
    the postcode line names no state yet (``41050`` / ``KLANG SELANGOR D.E, MALAYSIA``; at
    most two words when it does); never one with a ``:`` (``PAY BY : CASH``)."""
    if ":" in ln.text:
        return False
    if key_re is not None and key_re.search(ln.flat):
        return True
    if any(c.isdigit() for c in ln.text):
        return False
    m = _postcode(post.text)
    after = post.text[m.end() :] if m else ""
    if post.text.rstrip().endswith(","):
        return len(ln.flat.split()) <= 6
    if "," in after.strip(" ,") or len(flat(after).split()) >= 3:
        return False  # "56000 KUALA LUMPUR, MALAYSIA": city and state are there
    return len(ln.flat.split()) <= 3


def _cut_at_stop(ln: _Line) -> _Line:
    """``ln`` without what follows a stop key inside it (``81750 JOHOR BAHRU, TEL NO.: 07-387
    3322``: OCR joins cells of one row), when an address-like part stands before the key."""
    stop_re = _key_re(ADDRESS_STOP_KEYS)
    m = stop_re.search(ln.flat) if stop_re is not None else None
    if m is None or m.start() < 8:
        return ln
    cut = _cut_after(ln.text, m.start())
    if cut is None:
        return ln
    head = ln.text[:cut].rstrip()
    # drop the stop key's first character that _cut_after kept
    while head and head[-1].isalnum():
        head = head[:-1]
    head = head.rstrip(" ,;:(-")
    if not head:
        return ln
    return replace(ln, text=head, flat=flat(head))


def _not_address(ln: _Line) -> bool:
    """A header line that is never part of an address: a registration number, a stop line
    (phone, tax number, title...), a document title, a date."""
    stop_re, noise_re = _key_re(ADDRESS_STOP_KEYS), _key_re(HEADER_NOISE)
    return bool(
        _is_registration(ln, _key_re(REGISTRATION_KEYS))
        or (stop_re is not None and stop_re.search(ln.flat))
        or (noise_re is not None and noise_re.search(ln.flat))
        or _has_date(ln.text)
    )


def _postcode_line(head: list[_Line], taken: frozenset[int] | set[int] = frozenset()) -> int | None:
    """Position in ``head`` of the first line with a postcode that may be an address line."""
    return next(
        (
            i
            for i, ln in enumerate(head)
            if ln.index not in taken
            and _postcode(ln.text)
            and not _not_address(ln)
            and _address_start(ln, None)
        ),
        None,
    )


def _address_block(
    ls: list[_Line], spec: FieldSpec, company: list[_Line]
) -> tuple[str, list[_Line], float] | None:
    """The address around the first postcode line of the header: the lines above it up to
    the company, a registration number, a stop line or a document title (leading lines with
    neither a digit nor an address keyword left out: a branch name), then what continues it
    below (:func:`_continues_address`)."""
    key_re = _key_re(tuple(spec.keywords))
    head = ls[: HEADER_LINES + 6]
    taken = {ln.index for ln in company}

    def blocked(ln: _Line) -> bool:
        return ln.index in taken or _not_address(ln)

    p = _postcode_line(head, taken)
    if p is None:
        return None
    start = p
    while start > 0 and p - start < ADDRESS_MAX_LINES - 1 and not blocked(head[start - 1]):
        start -= 1
    while start < p and not (
        any(c.isdigit() for c in head[start].text.split()[0])
        or (key_re is not None and key_re.search(head[start].flat))
    ):
        start += 1  # a branch or brand line ("NANDO'S 1 MONT KIARA") is no address yet
    parts = head[start : p + 1]
    k = p + 1
    while k < len(head) and not blocked(head[k]) and _continues_address(parts[-1], head[k], key_re):
        parts.append(head[k])
        if not parts[-1].text.rstrip().endswith(","):
            break
        k += 1
    text = " ".join(" ".join(q.text.split()) for q in parts)
    return text, list(parts), 0.8


# ---------------------------------------------------------------------------- the stage


def _result(
    spec: FieldSpec, raw: str, parts: list[_Line], lines: list[TextLine], conf: float
) -> FieldResult:
    _, valid, reason = check_value(raw, spec)
    value = normalise(raw.strip(), spec)  # as printed: a company's trailing "." stays
    line_conf = min(float(lines[p.index].confidence) for p in parts)
    xs = [x for p in parts for x in (p.x0, p.x1)]
    ys = [y for p in parts for y in (p.y0, p.y1)]
    box = ((min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)))
    if not valid:
        conf = min(conf, 0.5)
    return FieldResult(
        name=spec.name,
        raw_value=raw,
        value=value,
        confidence=conf * line_conf,
        extraction_confidence=conf,
        line_index=parts[0].index,
        box=box,
        valid=valid,
        reason="" if valid else (reason or "empty value"),
    )


def extract_receipt(lines: list[TextLine], specs: list[FieldSpec]) -> dict[str, FieldResult]:
    """The receipt fields of ``specs`` (by name: company, date, address, total) found in
    ``lines`` (module docstring); a field that is not found is left out."""
    ls = _lines(lines)
    top_down = sorted(ls, key=lambda ln: ln.y0)  # the header in print order
    by_name = {s.name: s for s in specs}
    out: dict[str, FieldResult] = {}
    company = None
    if "company" in by_name or "address" in by_name:
        addr_spec = by_name.get("address") or spec_for("address")
        p = _postcode_line(top_down[: HEADER_LINES + 6])
        company = _company(
            top_down[:p] if p else top_down,  # the name stands above the address
            by_name.get("company") or spec_for("company"),
            tuple(addr_spec.keywords),
        )
    if company is not None and "company" in by_name:
        text, parts, conf = company
        out["company"] = _result(by_name["company"], text, parts, lines, conf)
    if "address" in by_name:
        after = top_down.index(company[1][-1]) + 1 if company is not None else 0
        addr_lines = [_cut_at_stop(ln) for ln in top_down]
        got = _address_block(addr_lines, by_name["address"], company[1] if company else [])
        if got is None:
            got = _address(addr_lines, by_name["address"], after)
        if got is not None:
            out["address"] = _result(by_name["address"], got[0], got[1], lines, got[2])
    if "date" in by_name:
        got_d = _date(ls, by_name["date"])
        if got_d is not None:
            out["date"] = _result(by_name["date"], got_d[0], [got_d[1]], lines, got_d[2])
    if "total" in by_name:
        got_t = _total(ls, by_name["total"])
        if got_t is not None:
            out["total"] = _result(by_name["total"], got_t[0], [got_t[1]], lines, got_t[2])
    return out
