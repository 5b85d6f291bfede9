"""GS1 Digital Link URIs (QR codes): parsed into the same GS1 elements and fields as element
strings, on any domain and path prefix, with query attributes; and read off a QR code."""

from __future__ import annotations

import numpy as np
import zxingcpp

from workers.fieldspec.gs1 import looks_like_digital_link, looks_like_gs1, parse_gs1
from workers.pipeline.barcodes import cross_check, decode_codes


def test_canonical_uri_with_query_attributes():
    r = parse_gs1("https://id.gs1.org/01/09506000134352/10/LOT42/21/SN12345?17=261231&11=240315")
    assert r.ok, r.to_dict()
    assert r.fields() == {
        "gtin": "09506000134352",
        "lot": "LOT42",
        "serial_number": "SN12345",
        "expiry_date": "2026-12-31",
        "mfg_date": "2024-03-15",
    }


def test_any_domain_path_prefix_percent_encoding_and_short_gtin():
    uri = "https://brand.example.com/p/x/01/9506000134352/21/AB%2F12-3?linkType=gs1:pip&10=L%201"
    assert looks_like_digital_link(uri) and looks_like_gs1(uri)
    r = parse_gs1(uri)
    fields = r.fields()
    assert fields["gtin"] == "09506000134352"  # GTIN-13 padded to 14 digits
    assert fields["serial_number"] == "AB/12-3"  # percent-decoded
    assert "lot" not in fields  # "L 1": a space is outside the GS1 character set
    assert [e.ai for e in r.elements] == ["01", "21", "10"]  # linkType is no element data
    assert not r.get("10").valid


def test_bad_check_digit_and_qualifier_order_are_reported():
    bad = parse_gs1("https://id.gs1.org/01/09506000134353/21/SN1")
    assert not bad.ok and not bad.get("01").valid and "check digit" in bad.get("01").reason
    order = parse_gs1("https://id.gs1.org/01/09506000134352/21/SN1/10/LOT")
    assert order.errors and "qualifier" in order.errors[0]
    assert order.fields() == {"gtin": "09506000134352", "serial_number": "SN1"}


def test_plain_urls_are_not_digital_links():
    for text in (
        "https://example.com/p?sn=SN12345",
        "https://example.com/01",  # an AI without its value
        "ftp://id.gs1.org/01/09506000134352",
        "01/09506000134352",
    ):
        assert not looks_like_digital_link(text), text
    assert not parse_gs1("https://example.com/p?sn=SN12345").elements


def test_a_qr_code_with_a_digital_link_fills_gs1_elements_and_cross_checks():
    uri = "https://id.gs1.org/01/09506000134352/21/SN12345?10=LOT42"
    sym = np.asarray(zxingcpp.create_barcode(uri, zxingcpp.BarcodeFormat.QRCode).to_image(scale=6))
    canvas = np.full((sym.shape[0] + 80, sym.shape[1] + 80, 3), 255, np.uint8)
    canvas[40 : 40 + sym.shape[0], 40 : 40 + sym.shape[1]] = sym[:, :, None]
    [code] = decode_codes(canvas)
    assert code.format == "QRCode" and code.text == uri
    assert code.gs1_value("21") == "SN12345" and code.gs1_value("10") == "LOT42"
    [mismatch] = cross_check({"serial_number": "SN12346"}, [code])
    assert (mismatch.printed, mismatch.coded, mismatch.source) == ("SN12346", "SN12345", "gs1:21")
    assert cross_check({"serial_number": "SN12345"}, [code]) == []
