"""Text content for synthetic nameplates: field values, label keywords and distractors.

Every generator takes a ``random.Random`` and never touches global random state, so the same
seed always gives the same text.
"""

from __future__ import annotations

import random
import string

UPPER = string.ascii_uppercase
UPPER_NO_IO = "".join(c for c in UPPER if c not in "IO")
DIGITS = string.digits
HEX = "0123456789ABCDEF"

FIELDS = (
    "serial",
    "part_number",
    "lot",
    "mfg_date",
    "model",
    "mac",
    "imei",
    "gtin",
    "manufacturer",
)

# field -> (English keys, Korean keys)
FIELD_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "serial": (
        ("S/N", "SN", "Serial No.", "SERIAL NO.", "Serial Number", "SER. NO.", "S/NO."),
        ("제조번호", "일련번호", "시리얼번호"),
    ),
    "part_number": (("P/N", "PN", "Part No.", "PART NO.", "Part Number"), ("부품번호",)),
    "lot": (("LOT", "Lot No.", "LOT NO.", "Batch", "BATCH"), ("로트", "로트번호")),
    "mfg_date": (
        ("MFG", "MFD", "Mfg. Date", "DATE", "Date of Mfg.", "MFG DATE"),
        ("제조일자", "제조년월"),
    ),
    "model": (("Model", "MODEL", "Model No.", "MODEL NO.", "Type"), ("모델명",)),
    "mac": (("MAC", "MAC ADDR", "MAC Address"), ()),
    "imei": (("IMEI",), ()),
    "gtin": (("GTIN", "EAN"), ()),
    "manufacturer": (("Manufacturer", "MFR", "Mfr."), ("제조사", "제조자")),
}

COMPANY_EN = (
    "HANSOL ELECTRIC",
    "DAEWON PRECISION",
    "KORYO MOTORS",
    "ORION SYSTEMS",
    "SEJIN INDUSTRIAL",
    "NOVATEK CONTROLS",
    "ACME INSTRUMENTS",
    "MIRAE TECH",
    "SUNWAY PUMPS",
    "HYOSUNG POWER",
    "KESTREL DEVICES",
    "TAEYANG METAL",
)
COMPANY_SUFFIX = ("Co., Ltd.", "CORP.", "Inc.", "Ltd.", "GmbH", "")
COMPANY_KO = (
    "(주)대한정밀",
    "한솔전기(주)",
    "세진산업",
    "미래테크(주)",
    "(주)태양금속",
    "오리온시스템",
)
PRODUCT_TITLES = (
    "INDUCTION MOTOR",
    "AC SERVO DRIVE",
    "CENTRIFUGAL PUMP",
    "POWER SUPPLY UNIT",
    "PRESSURE TRANSMITTER",
    "CONTROL VALVE",
    "LED DRIVER",
    "GEAR REDUCER",
    "AIR COMPRESSOR",
    "BATTERY PACK",
)
PRODUCT_TITLES_KO = ("유도전동기", "서보 드라이브", "원심 펌프", "전원 공급 장치", "압력 전송기")


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_check_digit(digits: str) -> str:
    """Luhn check digit for a string of digits (the check digit itself not included)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # rightmost payload digit is doubled
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and luhn_check_digit(number[:-1]) == number[-1]


def gs1_check_digit(digits: str) -> str:
    """GS1 mod-10 check digit (weights 3,1,3,... from the right) for GTIN-8/12/13/14 payloads."""
    total = sum(int(ch) * (3 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def gs1_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and gs1_check_digit(number[:-1]) == number[-1]


# ---------------------------------------------------------------- values


def gen_serial(rng: random.Random, *, charset: str = "any") -> str:
    """Vendor-like serial numbers. ``charset="digits"`` gives digits and dashes only."""
    yy = rng.randint(18, 26)
    ww = rng.randint(1, 52)
    if charset == "digits":
        kind = rng.randrange(3)
        if kind == 0:
            return _s(rng, DIGITS, rng.randint(8, 12))
        if kind == 1:
            return f"{yy:02d}{ww:02d}-{_s(rng, DIGITS, rng.randint(5, 7))}"
        return f"{_s(rng, DIGITS, 3)}-{_s(rng, DIGITS, 3)}-{_s(rng, DIGITS, 4)}"
    kind = rng.randrange(8)
    if kind == 0:  # 2-4 letters + 6-10 digits
        return _s(rng, UPPER_NO_IO, rng.randint(2, 4)) + _s(rng, DIGITS, rng.randint(6, 10))
    if kind == 1:  # dashed groups
        return (
            f"{_s(rng, UPPER_NO_IO, rng.randint(2, 3))}-{yy:02d}{ww:02d}-"
            f"{_s(rng, DIGITS, rng.randint(4, 6))}"
        )
    if kind == 2:  # year/week code first
        return f"{yy:02d}W{ww:02d}-{_s(rng, DIGITS, rng.randint(4, 6))}"
    if kind == 3:  # mixed alphanumeric, 11 chars (phone/appliance style)
        return (
            _s(rng, UPPER_NO_IO, 1)
            + _s(rng, DIGITS, 2)
            + _s(rng, UPPER_NO_IO, 1)
            + _s(rng, DIGITS + UPPER_NO_IO, 7)
        )
    if kind == 4:  # yymmdd + line + sequence
        return (
            f"{yy:02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            f"{rng.choice('ABCDL')}{rng.randint(1, 9)}-{_s(rng, DIGITS, 4)}"
        )
    if kind == 5:  # pure digits
        return _s(rng, DIGITS, rng.randint(8, 12))
    if kind == 6:  # letter prefix + year + sequence
        return f"{_s(rng, UPPER_NO_IO, 1)}{2000 + yy}{_s(rng, DIGITS, rng.randint(5, 7))}"
    return f"{_s(rng, UPPER, 2)}{_s(rng, DIGITS, 2)}{_s(rng, UPPER, 1)}{_s(rng, DIGITS, 6)}"


def gen_part_number(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return f"{_s(rng, DIGITS, 5)}-{_s(rng, DIGITS, 5)}"
    if kind == 1:
        return f"{_s(rng, UPPER, 1)}{_s(rng, DIGITS, 1)}{_s(rng, UPPER, 1)}-{_s(rng, DIGITS, 4)}-{_s(rng, DIGITS, 2)}"
    if kind == 2:
        return f"{_s(rng, DIGITS, 4)}-{_s(rng, DIGITS, 4)}-{_s(rng, UPPER, 1)}"
    if kind == 3:
        return f"{_s(rng, UPPER, 2)}{_s(rng, DIGITS, 4)}{rng.choice(['-CT', '-T', 'A', '-01', ''])}"
    return f"{_s(rng, UPPER, 3)}{_s(rng, DIGITS, 3)}.{_s(rng, DIGITS, 3)}"


def gen_lot(rng: random.Random) -> str:
    yy = rng.randint(18, 26)
    mm = rng.randint(1, 12)
    dd = rng.randint(1, 28)
    kind = rng.randrange(5)
    if kind == 0:
        return f"L{yy:02d}{mm:02d}{dd:02d}{rng.choice(UPPER)}"
    if kind == 1:
        return f"{yy:02d}{mm:02d}-{rng.randint(1, 99):02d}"
    if kind == 2:
        return f"B{_s(rng, DIGITS, 5)}"
    if kind == 3:
        return f"{_s(rng, UPPER, 2)}{_s(rng, DIGITS, 6)}"
    return f"{yy:02d}{rng.randint(1, 52):02d}{_s(rng, DIGITS, 3)}"


def gen_date(rng: random.Random, *, korean: bool = True, fmt: int | None = None) -> str:
    """A date in one of several label formats (``korean=False`` avoids Hangul)."""
    y = rng.randint(2018, 2026)
    m = rng.randint(1, 12)
    d = rng.randint(1, 28)
    n_fmt = 9 if korean else 7
    f = rng.randrange(n_fmt) if fmt is None else fmt
    months = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    if f == 0:
        return f"{y}-{m:02d}-{d:02d}"
    if f == 1:
        return f"{y}.{m:02d}"
    if f == 2:
        return f"{m:02d}/{y}"
    if f == 3:
        week = min(52, max(1, (m - 1) * 4 + d // 7 + 1))
        return f"{y % 100:02d}W{week:02d}"
    if f == 4:
        return f"{y}.{m:02d}.{d:02d}"
    if f == 5:
        return f"{d:02d}/{m:02d}/{y}"
    if f == 6:
        return f"{months[m - 1]} {y}"
    if f == 7:
        return f"{y}년 {m:02d}월"
    return f"{y}년 {m:02d}월 {d:02d}일"


def gen_model(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return f"{_s(rng, UPPER, 2)}-{rng.randint(100, 9900)}"
    if kind == 1:
        return f"{_s(rng, UPPER, 2)}-{_s(rng, UPPER, 1)}{rng.randint(100, 999)}{_s(rng, UPPER, 1)}"
    if kind == 2:
        return f"{_s(rng, UPPER, 2)}-{rng.randint(1000, 9999)}{_s(rng, UPPER, 2)}"
    if kind == 3:
        return (
            f"{_s(rng, UPPER, 2)} {rng.randint(100, 990)} {rng.choice(['PRO', 'PLUS', 'S', 'II'])}"
        )
    return f"{_s(rng, UPPER, 3)}{rng.randint(10, 99)}-{rng.randint(1, 9)}{_s(rng, UPPER, 1)}"


def gen_mac(rng: random.Random) -> str:
    octets = [_s(rng, HEX, 2) for _ in range(6)]
    sep = rng.choice([":", "-", ""])
    mac = sep.join(octets)
    return mac.lower() if rng.random() < 0.25 else mac


def gen_imei(rng: random.Random) -> str:
    """15-digit IMEI: 8-digit TAC + 6-digit serial + Luhn check digit."""
    body = rng.choice(["35", "86", "01", "49"]) + _s(rng, DIGITS, 12)
    return body + luhn_check_digit(body)


def gen_gtin(rng: random.Random, *, length: int | None = None) -> str:
    """GTIN-13 (Korean 880 prefix or generic) or GTIN-14 with a valid GS1 check digit."""
    n = length or rng.choice([13, 13, 14])
    prefix = rng.choice(["880", "880", "400", "590", "069"])
    if n == 14:
        prefix = str(rng.randint(0, 8)) + prefix
    body = prefix + _s(rng, DIGITS, n - 1 - len(prefix))
    return body + gs1_check_digit(body)


def gen_manufacturer(rng: random.Random, *, korean: bool = True) -> str:
    if korean and rng.random() < 0.35:
        return rng.choice(COMPANY_KO)
    suffix = rng.choice(COMPANY_SUFFIX)
    return f"{rng.choice(COMPANY_EN)} {suffix}".strip()


def gen_value(field: str, rng: random.Random, *, korean: bool = True) -> str:
    if field == "serial":
        return gen_serial(rng)
    if field == "part_number":
        return gen_part_number(rng)
    if field == "lot":
        return gen_lot(rng)
    if field == "mfg_date":
        return gen_date(rng, korean=korean)
    if field == "model":
        return gen_model(rng)
    if field == "mac":
        return gen_mac(rng)
    if field == "imei":
        return gen_imei(rng)
    if field == "gtin":
        return gen_gtin(rng)
    if field == "manufacturer":
        return gen_manufacturer(rng, korean=korean)
    raise ValueError(f"unknown field {field!r}")


def gen_key(field: str, rng: random.Random, *, lang: str = "en", colon: bool | None = None) -> str:
    """A label keyword for ``field``; ``lang`` is "en", "ko" or "bi" (bilingual)."""
    en, ko = FIELD_KEYS[field]
    if lang == "ko" and ko:
        key = rng.choice(ko)
    elif lang == "bi" and ko:
        k, e = rng.choice(ko), rng.choice(en)
        key = rng.choice([f"{k}({e})", f"{k} / {e}", f"{k} {e}"])
    else:
        key = rng.choice(en)
    if colon is None:
        colon = rng.random() < 0.6
    if colon and not key.endswith(":"):
        key += ":"
    return key


# ---------------------------------------------------------------- distractors


def gen_distractor(rng: random.Random, *, korean: bool = True) -> str:
    """A line that is on real nameplates but is not one of the key fields."""
    kinds = ["rating", "rating", "phone", "origin", "address", "other_date", "cert", "misc"]
    kind = rng.choice(kinds)
    if kind == "rating":
        return rng.choice(
            [
                f"{rng.choice([110, 220, 230, 380])}V~ {rng.choice(['50/60Hz', '60Hz', '50Hz'])} "
                f"{rng.choice([0.5, 1.2, 1.5, 2.0, 3.5, 10])}A",
                f"DC {rng.choice([5, 12, 24, 48])}V {rng.choice([0.5, 1, 2, 3.5])}A",
                f"INPUT: 100-240V~ {rng.choice([0.8, 1.5, 2.0])}A",
                f"{rng.choice([0.75, 1.5, 2.2, 3.7, 5.5])}kW {rng.choice([1450, 1720, 2880, 3450])}r/min",
                f"IP{rng.choice([54, 55, 65, 67, 68])}  INS. CL. {rng.choice('BFH')}",
                f"POWER {rng.choice([35, 120, 350, 750])}W",
            ]
        )
    if kind == "phone":
        return rng.choice(
            [
                f"Tel. 0{rng.randint(2, 63)}-{rng.randint(200, 9999)}-{rng.randint(1000, 9999)}",
                f"+82-{rng.randint(2, 63)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
                f"A/S 1588-{rng.randint(1000, 9999)}",
            ]
        )
    if kind == "origin":
        return rng.choice(["Made in Korea", "MADE IN KOREA", "Made in China", "MADE IN JAPAN"])
    if kind == "address":
        if korean and rng.random() < 0.4:
            return (
                f"경기도 {rng.choice(['안산시', '화성시', '평택시'])} 산업로 {rng.randint(1, 300)}"
            )
        return (
            f"{rng.randint(1, 300)}, {rng.choice(['Gasan', 'Sandan', 'Techno', 'Banwol'])}-ro, "
            f"{rng.choice(['Seoul', 'Ansan', 'Incheon', 'Changwon'])}, Korea"
        )
    if kind == "other_date":
        label = rng.choice(["EXP", "Inspected", "Warranty until", "Cal. due", "REV"])
        return f"{label} {gen_date(rng, korean=False, fmt=rng.choice([0, 1, 4]))}"
    if kind == "cert":
        return rng.choice(
            [
                f"KC R-R-{_s(rng, UPPER, 3)}-{_s(rng, UPPER + DIGITS, 6)}",
                "CE  FC  RoHS",
                f"UL FILE E{_s(rng, DIGITS, 6)}",
            ]
        )
    return rng.choice(
        [
            f"WEIGHT {rng.choice([0.8, 2.3, 4.5, 12])}kg",
            f"Qty. {rng.randint(1, 500)} pcs",
            "CAUTION: HIGH VOLTAGE",
            f"AMB. {rng.choice([40, 45, 50])}°C",
            f"{rng.choice(['Rev.', 'Ver.'])} {rng.randint(1, 9)}.{rng.randint(0, 9)}",
        ]
    )


def has_hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" or "\u3130" <= ch <= "\u318f" for ch in text)
