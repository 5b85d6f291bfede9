"""Barcode decoding on generated, warped, noisy images, and the mislabel cross-check."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest
import zxingcpp

from workers.fieldspec.gs1 import GS, parse_gs1
from workers.pipeline.barcodes import CodeResult, Mismatch, cross_check, decode_codes

GS1_HRI = "(01)09506000134352(11)240315(10)LOT42(21)SN12345"


def _symbol(content: str, fmt: zxingcpp.BarcodeFormat, *, gs1: bool = False, scale: int = 4):
    kwargs = {"gs1": True} if gs1 else {}
    barcode = zxingcpp.create_barcode(content, fmt, **kwargs)
    return np.asarray(barcode.to_image(scale=scale))  # HxW uint8, black on white


def _paste(canvas: np.ndarray, sym: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    h, w = sym.shape
    canvas[y : y + h, x : x + w] = sym[:, :, None]
    return x, y, w, h


def _photo(seed: int = 0) -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """An RGB 'photo' (HxWx3 uint8) with three codes on a label, perspective-warped,
    blurred and noisy. Returns the image and each symbol's box before warping."""
    rng = np.random.default_rng(seed)
    label = np.full((700, 1000, 3), 235, np.uint8)
    boxes = {
        "dm": _paste(
            label, _symbol(GS1_HRI, zxingcpp.BarcodeFormat.DataMatrix, gs1=True, scale=6), 60, 60
        ),
        "qr": _paste(
            label,
            _symbol("https://example.com/p?sn=SN12345", zxingcpp.BarcodeFormat.QRCode, scale=5),
            600,
            60,
        ),
        "c128": _paste(
            label, _symbol("PN-77812-X", zxingcpp.BarcodeFormat.Code128, scale=3), 80, 420
        ),
    }
    src = np.float32([[0, 0], [1000, 0], [1000, 700], [0, 700]])
    dst = np.float32([[90, 60], [1180, 130], [1120, 860], [40, 790]])
    m = cv2.getPerspectiveTransform(src, dst)
    photo = cv2.warpPerspective(label, m, (1280, 960), borderValue=(90, 100, 110))
    photo = cv2.GaussianBlur(photo, (3, 3), 0)
    noise = rng.normal(0, 8, photo.shape)
    photo = np.clip(photo.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    photo[..., 0] = np.clip(photo[..., 0].astype(int) + 10, 0, 255)  # slight colour cast
    return photo, {k: _warp_box(m, b) for k, b in boxes.items()}


def _warp_box(m: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    pts = np.float32([[[x, y]], [[x + w, y]], [[x + w, y + h]], [[x, y + h]]])
    return cv2.perspectiveTransform(pts, m).reshape(4, 2)


@pytest.fixture(scope="module")
def decoded():
    photo, boxes = _photo()
    return decode_codes(photo), boxes, photo.shape


def test_decodes_all_three_codes(decoded):
    codes, _, _ = decoded
    by_format = {c.format: c for c in codes}
    assert set(by_format) == {"DataMatrix", "QRCode", "Code128"}
    assert by_format["QRCode"].text == "https://example.com/p?sn=SN12345"
    assert by_format["QRCode"].gs1 is None
    assert by_format["Code128"].text == "PN-77812-X"
    assert base64.b64decode(by_format["Code128"].raw_bytes_b64) == b"PN-77812-X"


def test_gs1_datamatrix_is_parsed(decoded):
    codes, _, _ = decoded
    dm = next(c for c in codes if c.format == "DataMatrix")
    assert dm.content_type == "GS1"
    assert dm.text == GS1_HRI
    assert GS.encode() in dm.raw_bytes  # variable-length fields separated by FNC1/GS
    assert [(e.ai, e.value, e.valid) for e in dm.gs1] == [
        ("01", "09506000134352", True),
        ("11", "240315", True),
        ("10", "LOT42", True),
        ("21", "SN12345", True),
    ]
    assert dm.gs1_value("11") == "2024-03-15"
    assert dm.gs1_value("21") == "SN12345"
    assert dm.gs1_errors == ()


def test_polygons_are_in_image_pixel_coordinates(decoded):
    codes, boxes, shape = decoded
    key = {"DataMatrix": "dm", "QRCode": "qr", "Code128": "c128"}
    for c in codes:
        poly = np.array(c.polygon, dtype=np.float32)
        assert poly.shape == (4, 2)
        assert (poly[:, 0] >= 0).all() and (poly[:, 0] < shape[1]).all()
        assert (poly[:, 1] >= 0).all() and (poly[:, 1] < shape[0]).all()
        # The decoded symbol's centre lies inside the warped box it was pasted into.
        box = boxes[key[c.format]]
        inside = cv2.pointPolygonTest(box.reshape(-1, 1, 2), tuple(map(float, poly.mean(0))), False)
        assert inside >= 0, (c.format, poly, box)


def test_gs1_code128_and_qr_are_parsed():
    canvas = np.full((500, 1400), 255, np.uint8)
    _paste3 = canvas[..., None].repeat(3, axis=2)
    _paste(
        _paste3,
        _symbol("(01)09506000134352(21)XYZ-9", zxingcpp.BarcodeFormat.Code128, gs1=True, scale=2),
        20,
        20,
    )
    _paste(
        _paste3,
        _symbol("(01)09506000134352(10)B7", zxingcpp.BarcodeFormat.QRCode, gs1=True, scale=5),
        900,
        200,
    )
    codes = decode_codes(_paste3)
    by_format = {c.format: c for c in codes}
    assert by_format["Code128"].symbology_identifier == "]C1"
    assert by_format["Code128"].gs1_value("21") == "XYZ-9"
    assert by_format["QRCode"].symbology_identifier == "]Q3"
    assert by_format["QRCode"].gs1_value("10") == "B7"


def test_ean13_and_grayscale_input():
    gray = np.full((400, 700), 255, np.uint8)
    sym = _symbol("4006381333931", zxingcpp.BarcodeFormat.EAN13, scale=3)
    gray[50 : 50 + sym.shape[0], 50 : 50 + sym.shape[1]] = sym
    codes = decode_codes(gray)
    assert [(c.format, c.text) for c in codes] == [("EAN13", "4006381333931")]


def test_blank_image_has_no_codes():
    assert decode_codes(np.full((240, 320, 3), 200, np.uint8)) == []
    assert decode_codes(np.zeros((0, 0, 3), np.uint8)) == []


def test_to_dict_is_json_safe(decoded):
    codes, _, _ = decoded
    for c in codes:
        d = c.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert len(d["polygon"]) == 4


# ---------------------------------------------------------------- cross-check


def _gs1_code(hri: str, fmt: str = "DataMatrix") -> CodeResult:
    parsed = parse_gs1(hri)
    return CodeResult(fmt, hri, None, ((0, 0), (1, 0), (1, 1), (0, 1)), gs1=parsed.elements)


def _text_code(text: str, fmt: str = "Code128") -> CodeResult:
    return CodeResult(fmt, text, None, ((0, 0), (1, 0), (1, 1), (0, 1)))


def test_real_codes_agree_with_printed_fields(decoded):
    codes, _, _ = decoded
    printed = {
        "serial_number": "sn 12345",
        "lot": "LOT42",
        "gtin": "9506000134352",
        "mfg_date": "2024.03.15",
        "part_number": "PN77812X",
    }
    assert cross_check(printed, codes) == []


def test_mislabel_flagged_when_printed_serial_differs(decoded):
    codes, _, _ = decoded
    mismatches = cross_check({"serial_number": "SN12346", "part_number": "PN-77812-X"}, codes)
    assert mismatches == [
        Mismatch("serial_number", "SN12346", "SN12345", "DataMatrix", "gs1:21"),
        Mismatch("serial_number", "SN12346", "SN12345", "QRCode", "text"),  # ?sn= in the URL
    ]
    assert mismatches[0].to_dict()["source"] == "gs1:21"


@pytest.mark.parametrize("printed", ["SN12345", "sn-12345", "SN 123 45", " Sn12345 "])
def test_equal_modulo_spaces_dashes_case_is_not_flagged(printed):
    assert cross_check({"serial_number": printed}, [_gs1_code(GS1_HRI)]) == []


def test_other_gs1_fields_are_compared():
    code = _gs1_code(GS1_HRI)
    got = cross_check({"lot": "LOT43", "mfg_date": "2024-03-16", "gtin": "09506000134352"}, [code])
    assert [(m.field, m.coded) for m in got] == [("mfg_date", "240315"), ("lot", "LOT42")]


@pytest.mark.parametrize(
    ("printed", "flagged"),
    [
        ("2024-03-15", False),
        ("15/03/2024", False),
        ("2024-03-16", True),
        ("03/2024", False),  # month precision: same month
        ("2024년 03월", False),
        ("04/2024", True),
        ("24W11", False),  # ISO week 11 of 2024 contains 15 March
        ("24W12", True),
    ],
)
def test_dates_compared_at_printed_precision(printed, flagged):
    got = cross_check({"mfg_date": printed}, [_gs1_code(GS1_HRI)])
    assert bool(got) == flagged


@pytest.mark.parametrize(
    ("printed", "flagged"),
    [
        ("16 NOV", False),  # printed without a year: day and month agree
        ("16.11.", False),
        ("17 NOV", True),
        ("16 DEC", True),
        ("2026-11-16", False),
        ("2027-11-16", True),
        ("11/2026", False),  # month precision
    ],
)
def test_expiry_date_against_ai_17(printed, flagged):
    """A food pack's (17) expiry date against its print, also when the print has no year: a
    disagreeing one is a mislabel."""
    code = _gs1_code("(01)09506000134352(17)261116(10)L2318")
    got = cross_check({"expiry_date": printed}, [code])
    assert bool(got) == flagged
    if flagged:
        assert (got[0].field, got[0].coded, got[0].source) == ("expiry_date", "261116", "gs1:17")


def test_whole_text_serial_of_plain_code():
    assert cross_check({"serial_number": "ABC-123-9"}, [_text_code("ABC1239")]) == []
    got = cross_check({"serial_number": "ABC1238"}, [_text_code("ABC1239")])
    assert got == [Mismatch("serial_number", "ABC1238", "ABC1239", "Code128", "text")]


def test_plain_code_equal_to_another_printed_field_is_not_a_serial():
    printed = {"serial_number": "SN0001", "part_number": "PN-4471"}
    assert cross_check(printed, [_text_code("PN-4471")]) == []


def test_keyed_serial_in_qr_text():
    qr = _text_code("MODEL:X1;SN:KX99812;LOT:7", fmt="QRCode")
    assert cross_check({"serial_number": "KX99812"}, [qr]) == []
    got = cross_check({"serial_number": "KX99813"}, [qr])
    assert got and got[0].coded == "KX99812"


def test_heuristic_guess_defers_to_an_agreeing_code():
    codes = [_gs1_code(GS1_HRI), _text_code("OTHER-ID-77")]
    assert cross_check({"serial_number": "SN12345"}, codes) == []


def test_imei_code_compared_with_printed_imei():
    assert cross_check({"imei": "49-015420-323751-8"}, [_text_code("490154203237518")]) == []
    got = cross_check({"imei": "356938035643809"}, [_text_code("490154203237518")])
    assert got[0].field == "imei"


def test_nothing_to_compare():
    assert cross_check({}, [_gs1_code(GS1_HRI)]) == []
    assert cross_check({"serial_number": "X"}, []) == []
    assert cross_check({"serial_number": ""}, [_text_code("ABC1239")]) == []
    assert cross_check({"serial_number": "ABC"}, [_text_code("https://example.com/x")]) == []
