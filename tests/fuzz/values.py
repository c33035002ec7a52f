"""The values the fuzzer draws from: plausible ones (so that calls get past validation and
NOT_FOUND into the code behind) and hostile ones (what the contract says a client can send,
and what a careless or malicious client does send)."""

from __future__ import annotations

import math

from google.protobuf.descriptor import FieldDescriptor as FD

# --- plausible ---------------------------------------------------------------------------

#: Azure region ids (the link broker knows most of them; a few it may not).
AZURE_REGIONS = (
    "westeurope", "northeurope", "westus2", "westus3", "eastus", "eastus2", "centralus",
    "southcentralus", "uksouth", "ukwest", "francecentral", "germanywestcentral",
    "swedencentral", "norwayeast", "japaneast", "australiaeast", "brazilsouth",
    "centralindia", "southeastasia", "canadacentral", "koreacentral", "qatarcentral",
)
TENANTS = ("contoso", "fabrikam")
COUNTRIES = ("US", "DE", "GB", "FR", "JP", "AU", "BR")
CURRENCIES = ("USD", "EUR", "GBP")
WORDS = ("alpha", "bravo", "contoso", "fabrikam", "delta", "echo", "orbit", "gateway", "plan",
         "quincy", "dublin")
#: The ISS, as the orbit tests use it (epoch 2019-12-09).
ISS_TLE = ("ISS (ZARYA)\n"
           "1 25544U 98067A   19343.69339541  .00001764  00000-0  38792-4 0  9991\n"
           "2 25544  51.6439 211.2001 0007417  17.6667  85.6398 15.50103472202482\n")
OMM_JSON = ('[{"OBJECT_NAME": "FUZZSAT", "NORAD_CAT_ID": 25544, "EPOCH": '
            '"2019-12-09T16:38:29.363423", "MEAN_MOTION": 15.50103472, "ECCENTRICITY": '
            '0.0007417, "INCLINATION": 51.6439, "RA_OF_ASC_NODE": 211.2001, '
            '"ARG_OF_PERICENTER": 17.6667, "MEAN_ANOMALY": 85.6398, "BSTAR": 3.8792e-05}]')

#: Field names that hold a reference to another resource, and the collection it lives in
#: when the field's own name does not say it.
REFERENCE_ALIASES = {
    "counterparty": "partners", "owner": "partners", "source_partner": "partners",
    "spacecraft": "satellites", "target_region": "regions", "paired_region": "regions",
    "satellite": "satellites", "asset": "assets", "resource": "*", "referral": "referrals",
}
REFERENCE_FIELDS = frozenset((
    "name", "parent", "customer", "terminal", "subscription", "plan", "group", "groups",
    "satellites", "ground_station", "contact_profile", "track", "gateway", "link", "region",
    "regions", *REFERENCE_ALIASES,
))

# --- hostile -----------------------------------------------------------------------------

KB100 = 100 * 1024
SQL_AND_TEMPLATES = (
    "'; DROP TABLE x; --", "\" OR \"1\"=\"1", "1; SELECT pg_sleep(10); --", "' UNION SELECT "
    "password FROM users --", "{{7*7}}", "${7*7}", "<%= 7*7 %>", "#{7*7}", "{{config}}",
    "${jndi:ldap://x/a}", "<script>alert(1)</script>", "%s%s%s%s%n", "../../../etc/passwd",
    "%2e%2e%2f", "\\\\server\\share", "$(id)", "`id`", "null", "undefined", "NaN",
    "true", "[]", "{}",
)
CONTROL_AND_BIDI = (
    "a\x00b", "\x00", "\x01\x02\x03", "line\nbreak", "tab\there", "cr\rlf", "\x1b[31mred",
    "del\x7f", "c1\x85", "\u2028", "\u2029", "\u202eevil.exe", "\u202aembed", "\u2066iso\u2069",
    "\u200bzero-width", "\ufeffbom", "\u00a0", " ", "   ", "",
)
UNICODE = ("😀" * 10, "Ω≈ç√∫˜µ≤", "ẞİı", "東京", "مرحبا", "e\u0301", "\U0010ffff")
#: Names a user gets wrong, or an attacker tries.
MALFORMED_NAMES = (
    "x", "-1", "0", " ", "customers/", "customers//x", "/customers/x", "customers/x/",
    "customers/../plans/x", "customers/x/terminals", "CUSTOMERS/ABC", "customers/a b",
    "customers/*", "customers/-", "customers/%2e%2e", ".", "..", "*", "satellites/-1",
    "satellites/0", "satellites/99999999999999999999", "satellites/0x10", "satellites/1e3",
    "satellites/25544 ", "regions/", "regions/westeurope/", "westeurope ", " westeurope",
    "WESTEUROPE", "west europe", "westeurope\x00", "regions/nowhere", "plans/*",
    "links/00000000-0000-0000-0000-000000000000", "customers/does-not-exist",
    "groups/", "tracks/abc", "assets/-5", "alerts/1.5", "gateways/GW 1", "contacts/",
    "contactProfiles/\u202e", "groundStations/..",
)
LONG_STRINGS = ("x" * KB100, "é" * (KB100 // 2), "customers/" + "a" * KB100, "\x00" * 1024)

NAN, INF = math.nan, math.inf
HOSTILE_DOUBLES = (NAN, INF, -INF, -0.0, 1.7976931348623157e308, -1.7976931348623157e308,
                   5e-324, -5e-324, 1e-300, 1e300, float(2**53 + 1), -1.0, 0.0, 1e20, -1e20)
INT_EXTREMES = {
    "int32": (-2**31, 2**31 - 1, -1, 0),
    "int64": (-2**63, 2**63 - 1, -1, 0, 2**53 + 1),
    "uint32": (0, 2**32 - 1, 2**31),
    "uint64": (0, 2**64 - 1, 2**63),
}
_INT_KIND = {
    FD.TYPE_INT32: "int32", FD.TYPE_SINT32: "int32", FD.TYPE_SFIXED32: "int32",
    FD.TYPE_INT64: "int64", FD.TYPE_SINT64: "int64", FD.TYPE_SFIXED64: "int64",
    FD.TYPE_UINT32: "uint32", FD.TYPE_FIXED32: "uint32",
    FD.TYPE_UINT64: "uint64", FD.TYPE_FIXED64: "uint64",
}
INTEGER_TYPES = frozenset(_INT_KIND)
FLOAT_TYPES = frozenset((FD.TYPE_DOUBLE, FD.TYPE_FLOAT))

# google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
TS_MIN, TS_MAX = -62_135_596_800, 253_402_300_799
#: (seconds, nanos) a Timestamp must not hold.
BAD_TIMESTAMPS = ((TS_MIN - 1, 0), (TS_MAX + 1, 0), (-2**63, 0), (2**63 - 1, 0), (0, -1),
                  (0, 1_000_000_000), (1_700_000_000, 2**31 - 1), (1_700_000_000, -2**31),
                  (TS_MAX, 999_999_999 + 1))
DURATION_MAX = 315_576_000_000
#: (seconds, nanos) a Duration must not hold.
BAD_DURATIONS = ((DURATION_MAX + 1, 0), (-DURATION_MAX - 1, 0), (2**63 - 1, 0), (-2**63, 0),
                 (0, 1_000_000_000), (0, -1_000_000_000), (1, -1), (-1, 1), (0, 2**31 - 1))
#: Durations that are valid but nonsense for most fields.
ODD_DURATIONS = ((0, 0), (-1, 0), (0, 1), (DURATION_MAX, 0), (-DURATION_MAX, 0))


def int_kind(fd) -> str:
    return _INT_KIND[fd.type]


def undefined_enum_numbers(enum_type) -> tuple[int, ...]:
    defined = {v.number for v in enum_type.values}
    top = max(defined)
    candidates = (top + 1, top + 7, 99, 1000, -1, 2**31 - 1, -2**31)
    return tuple(n for n in candidates if n not in defined)


#: Bodies that are not protobuf at all (or not a message of the request type).
NOT_PROTOBUF = (
    (b"\x0f\xff\xff\xff", "wire type 7 (does not exist)"),
    (b"\x08", "truncated varint"),
    (b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "11-byte varint"),
    (b"\x0a\x7fabc", "length 127 past the end"),
    (b"\x0b", "start group without end"),
    (b"\x0c", "end group without start"),
    (b"\x00\x01", "field number 0"),
    (b"\x0b" * 200 + b"\x0c" * 200, "200 nested groups"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP text"),
    (b'{"name": "customers/abc"}', "JSON"),
    (b"\xff" * 64, "64 bytes of 0xff"),
    (b"\x0a\xff\xff\xff\xff\x0f", "length 4 GiB"),
)
