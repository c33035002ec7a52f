"""Pure checks of user input: emails, ISO 3166-1 countries, ISO 4217 currencies, ids, names.

No grpc, no sqlalchemy. Each check returns None when the value is good, else a short
description of what is wrong, which the caller files under the field's path.
"""

from __future__ import annotations

import re
import uuid

from shared.idempotency import request_id_problem

#: ISO 3166-1 alpha-2 (officially assigned codes).
COUNTRIES = frozenset(["AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW"])

#: ISO 4217 active currency codes (funds and precious metals excluded).
CURRENCIES = frozenset(["AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG"])

# A pragmatic address check (RFC 5321 lengths, one @, a dotted domain of letters/digits).
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SERIAL = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,62}[A-Z0-9]$")
_REGION = re.compile(r"^[a-z][a-z0-9]{1,39}$")

MAX_NAME = 200
MAX_NOTES = 4000
MAX_REASON = 500


def email(value: str) -> str | None:
    if not value:
        return "is required"
    if len(value) > 254 or not _EMAIL.match(value) or ".." in value.split("@")[0]:
        return f"{value[:80]!r} is not a valid email address"
    return None


def country(value: str) -> str | None:
    if not value:
        return "is required"
    if value not in COUNTRIES:
        return f"{value[:10]!r} is not an ISO 3166-1 alpha-2 country code (e.g. US, DE)"
    return None


def currency(value: str) -> str | None:
    if not value:
        return "is required"
    if value not in CURRENCIES:
        return f"{value[:10]!r} is not an ISO 4217 currency code (e.g. USD, EUR)"
    return None


def resource_id(value: str) -> str | None:
    if not value:
        return "is required"
    if len(value) < 2 or not _ID.match(value):
        return "must be 2 to 63 characters of a-z, 0-9 and '-', starting and ending alphanumeric"
    return None


def serial_number(value: str) -> str | None:
    if not value:
        return "is required"
    if not _SERIAL.match(value):
        return "must be 4 to 64 characters of A-Z, 0-9 and '-'"
    return None


def region(value: str) -> str | None:
    if not value:
        return "is required"
    if not _REGION.match(value):
        return f"{value[:50]!r} is not an Azure region name (lowercase letters and digits)"
    return None


def text(value: str, maximum: int = MAX_NAME, *, required: bool = True) -> str | None:
    if not value.strip():
        return "is required" if required else None
    if len(value) > maximum:
        return f"must be at most {maximum} characters (got {len(value)})"
    return None


def optional_text(value: str, maximum: int) -> str | None:
    if len(value) > maximum:
        return f"must be at most {maximum} characters (got {len(value)})"
    return None


def optional_uuid(value: str) -> str | None:
    if not value:
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return f"{value[:50]!r} is not a UUID"
    return None


def request_id(value: str) -> str | None:
    return request_id_problem(value, required=True)


def money(currency_code: str, units: int, nanos: int, *, allow_zero: bool = True) -> list[tuple[str, str]]:
    """Violations (relative field, description) of a google.type.Money-like amount."""
    problems = []
    bad_currency = currency(currency_code)
    if bad_currency:
        problems.append(("currency_code", bad_currency))
    if not -999_999_999 <= nanos <= 999_999_999:
        problems.append(("nanos", "must be between -999999999 and 999999999"))
    if units < 0 or nanos < 0:
        problems.append(("units", "must not be negative"))
    elif not allow_zero and units == 0 and nanos == 0:
        problems.append(("units", "must be above zero"))
    return problems
