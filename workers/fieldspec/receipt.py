"""The receipt vocabulary: what the receipt fields' keywords and rules are made of (stdlib only).

The catalogue's receipt fields (``company``, ``date``, ``address``, ``total``; catalogue
``document="receipt"``) take their keywords from here, and a product schema may replace them
(a field's ``keywords`` in the schema win): the receipt extractor
(``workers.pipeline.receipt``) reads the keywords from the resolved schema at run time.

- ``company``: words that mark a line as a business name (legal forms ``SDN BHD``, ``PLT``,
  ``LTD``...; trade words ``ENTERPRISE``, ``TRADING``, ``RESTORAN``...).
- ``date``: the keys printed before a receipt's date.
- ``address``: words of a street address (``JALAN``, ``LOT``, ``TAMAN``, ``ROAD``...).
- ``total``: the keys printed before the amount paid. :data:`TOTAL_KEY_RANK` says which win
  when several are printed (a rounded or grand total over a plain "total"); a key not in it
  (a customer's own) ranks like ``TOTAL``.

Besides the fields' keywords: :data:`NOT_TOTAL_KEYS` (sums that are not the amount paid:
subtotal, quantity, tax, savings, payment and change), :data:`ADDRESS_STOP_KEYS` (what ends the
address block: phone, fax, tax registration, the document title...), :data:`REGISTRATION_KEYS`
(company registration numbers printed between the name and the address), and
:data:`HEADER_NOISE` (document titles and greetings that are never the company).
"""

from __future__ import annotations

__all__ = [
    "ADDRESS_KEYS",
    "ADDRESS_STOP_KEYS",
    "COMPANY_KEYS",
    "DATE_KEYS",
    "HEADER_NOISE",
    "LEGAL_FORMS",
    "NOT_TOTAL_KEYS",
    "PAYMENT_KEYS",
    "REGISTRATION_KEYS",
    "TOTAL_KEYS",
    "TOTAL_KEY_RANK",
]

LEGAL_FORMS: tuple[str, ...] = (
    "SDN BHD",
    "SDN. BHD.",
    "SDN.BHD.",
    "SDN BHD.",
    "S/B",
    "BHD",
    "BERHAD",
    "PLT",
    "LTD",
    "LIMITED",
    "INC",
    "LLC",
    "GMBH",
    "CORPORATION",
    # OCR-damaged forms
    "S/8",
    "SON BHD",
    "SDN BHO",
    "SDN 8HD",
    "SD BHD",
)
"""Legal forms that end a company name (the name is cut after the last one)."""

COMPANY_KEYS: tuple[str, ...] = LEGAL_FORMS + (
    "ENTERPRISE",
    "ENTERPRISES",
    "TRADING",
    "HARDWARE",
    "RESTAURANT",
    "RESTAURANTS",
    "RESTORAN",
    "STATIONERY",
    "PHARMACY",
    "FARMASI",
    "BAKERY",
    "BAKERIES",
    "KEDAI",
    "SHOP",
    "STORE",
    "CENTRE",
    "MARKETING",
    "SUPERMARKET",
    "MINI MARKET",
    "SERVICE STATION",
    "PETROL",
    "CAFE",
    "KOPITIAM",
)

DATE_KEYS: tuple[str, ...] = (
    "DATE",
    "DATE/TIME",
    "DATE & TIME",
    "INVOICE DATE",
    "INV DATE",
    "BILL DATE",
    "RECEIPT DATE",
    "TRANS DATE",
    "TARIKH",
    "DATUM",
    "FECHA",
)

ADDRESS_KEYS: tuple[str, ...] = (
    "ADDRESS",
    "JALAN",
    "JLN",
    "LOT",
    "NO",
    "TAMAN",
    "TMN",
    "LORONG",
    "PERSIARAN",
    "KAWASAN",
    "BANDAR",
    "KAMPUNG",
    "KG",
    "BLOK",
    "BLOCK",
    "LEVEL",
    "FLOOR",
    "TINGKAT",
    "STREET",
    "ROAD",
    "AVENUE",
    "LANE",
    "PLAZA",
    "MALL",
    "SEKSYEN",
    "SECTION",
    "BATU",
    "UNIT",
)

TOTAL_KEY_RANK: dict[str, int] = {
    "ROUNDED TOTAL": 4,
    "TOTAL ROUNDED": 4,
    "ROUNDED": 3,
    "GRAND TOTAL": 4,
    "NETT TOTAL": 4,
    "NET TOTAL": 4,
    "NETT": 3,
    "AMOUNT DUE": 3,
    "TOTAL DUE": 3,
    "TOTAL PAYABLE": 3,
    "TOTAL AMT PAYABLE": 3,
    "AMOUNT PAYABLE": 3,
    "TOTAL AMOUNT": 3,
    "TOTAL AMT": 3,
    "TOTAL SALES": 2,
    "TOTAL INCL": 3,
    "TOTAL INCLUSIVE": 3,
    "TOTAL INCLUDING": 3,
    "JUMLAH": 2,
    "TOTAL": 2,
    "AMOUNT": 1,
}
TOTAL_KEYS: tuple[str, ...] = tuple(TOTAL_KEY_RANK)

PAYMENT_KEYS: tuple[str, ...] = (
    "CASH",
    "CHANGE",
    "TENDER",
    "TENDERED",
    "PAID",
    "PAYMENT",
    "BALANCE",
    "DEPOSIT",
    "VISA",
    "MASTER",
    "CREDIT CARD",
)
"""Keys of what was handed over or given back (never the total, even without a total key)."""

NOT_TOTAL_KEYS: tuple[str, ...] = PAYMENT_KEYS + (
    "SUBTOTAL",
    "SUB TOTAL",
    "SUB-TOTAL",
    "TOTAL QTY",
    "TOTAL QUANTITY",
    "TOTAL ITEM",
    "TOTAL ITEMS",
    "TOTAL SAVING",
    "TOTAL SAVINGS",
    "TOTAL DISCOUNT",
    "TOTAL DISC",
    "TOTAL EXCL",
    "TOTAL EXCLUDING",
    "EXCL GST",
    "EXCL. GST",
    "TOTAL GST",
    "TOTAL TAX",
    "GST SUMMARY",
    "TAX SUMMARY",
    "TOTAL 0%",
    "ITEM COUNT",
    "NO OF ITEMS",
    "ROUNDING ADJ",
    "ROUNDING ADJUSTMENT",
    "ROUNDING",
    "DISCOUNT",
    "SERVICE CHARGE",
    "SERVICE TAX",
    "GST",
    "TAX",
    "SST",
)
"""Keys of sums that are not the amount paid (their line's amount is theirs)."""

ADDRESS_STOP_KEYS: tuple[str, ...] = (
    "TEL",
    "TEL NO",
    "TELEPHONE",
    "PHONE",
    "PH",
    "H/P",
    "HP",
    "MOBILE",
    "FAX",
    "EMAIL",
    "E-MAIL",
    "WEBSITE",
    "WWW",
    "HTTP",
    "GST",
    "GST ID",
    "GST NO",
    "GST REG",
    "SST",
    "TAX INVOICE",
    "INVOICE",
    "SIMPLIFIED",
    "RECEIPT",
    "CASH BILL",
    "CASH SALE",
    "BILL",
    "CASHIER",
    "DATE",
    "TIME",
    "TABLE",
    "ORDER",
    "OPEN",
    "OPENING HOURS",
    "BUSINESS HOURS",
    "DOC NO",
    "SLIP",
    "TRANS",
    "THANK YOU",
    "WELCOME",
)

REGISTRATION_KEYS: tuple[str, ...] = (
    "CO REG",
    "CO. REG",
    "CO NO",
    "CO. NO",
    "COMPANY NO",
    "COMPANY REG",
    "REG NO",
    "ROC",
    "ROC NO",
    "BUSINESS REG",
)

HEADER_NOISE: tuple[str, ...] = (
    "TAX INVOICE",
    "SIMPLIFIED TAX INVOICE",
    "INVOICE",
    "RECEIPT",
    "OFFICIAL RECEIPT",
    "CASH BILL",
    "CASH SALE",
    "WELCOME",
    "WELCOME TO",
    "THANK YOU",
    "COPY",
    "ORIGINAL",
    "RE-PRINT",
    "HOURS",
    "TQ",
    "REPRINT",
)
