from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sgp4.api import Satrec

from services.orbit.elements import ElementSet, RejectedRecord
from services.orbit.tle import (
    alpha5_decode,
    alpha5_encode,
    checksum,
    format_tle,
    parse_tle,
    parse_tle_lines,
)
from tests.orbit.conftest import ISS_L1, ISS_L2


def _fix(line: str) -> str:
    return line[:68] + str(checksum(line))


def test_parse_iss_matches_sgp4_twoline2rv():
    (es,), bad = parse_tle(f"ISS (ZARYA)\n{ISS_L1}\n{ISS_L2}\n")
    assert bad == []
    assert es.name == "ISS (ZARYA)"
    assert es.catalog_number == 25544
    assert es.intl_designator == "98067A"
    assert es.classification == "U"
    assert es.mean_motion_rev_day == 15.50103472
    assert es.eccentricity == pytest.approx(0.0007417)
    assert es.bstar == pytest.approx(0.38792e-4)
    assert es.rev_at_epoch == 20248 and es.element_set_number == 999
    assert es.epoch.year == 2019 and es.epoch.tzinfo is not None
    ref = Satrec.twoline2rv(ISS_L1, ISS_L2)
    assert es.epoch_jd == ref.jdsatepoch
    assert es.epoch_fr == pytest.approx(ref.jdsatepochF, abs=1e-12)
    mine = es.to_satrec()
    for t in (0.0, 90.0, 1440.0):
        e1, r1, _ = ref.sgp4_tsince(t)
        e2, r2, _ = mine.sgp4_tsince(t)
        assert e1 == e2 == 0
        assert max(abs(a - b) for a, b in zip(r1, r2, strict=True)) < 1e-9


def test_two_and_three_line_mixed_and_blank_lines():
    text = f"\n{ISS_L1}\n{ISS_L2}\n\nISS\n{ISS_L1}\n{ISS_L2}\n0 ISS 3LE\n{ISS_L1}\n{ISS_L2}"
    good, bad = parse_tle(text)
    assert bad == []
    assert [e.name for e in good] == ["", "ISS", "ISS 3LE"]


@pytest.mark.parametrize(
    ("l1", "l2", "fragment"),
    [
        (ISS_L1[:68] + "0", ISS_L2, "checksum"),
        (ISS_L1, ISS_L2[:68] + "0", "checksum"),
        (ISS_L1[:-1], ISS_L2, "characters"),
        (_fix(ISS_L1[:8] + "X" + ISS_L1[9:]), ISS_L2, "column 9"),
        (ISS_L1, _fix(ISS_L2[:2] + "25545" + ISS_L2[7:]), "catalog numbers differ"),
        (ISS_L1, _fix(ISS_L2[:26] + "9999999" + ISS_L2[33:]), None),  # ecc .9999999 is valid
        (ISS_L1, _fix(ISS_L2[:8] + " 181.000" + ISS_L2[16:]), "inclination"),
        (ISS_L1, _fix(ISS_L2[:17] + " 361.000" + ISS_L2[25:]), "RAAN"),
        (ISS_L1, _fix(ISS_L2[:52] + " 0.00000000" + ISS_L2[63:]), "mean motion"),
        (ISS_L1, _fix(ISS_L2[:52] + "25.00000000" + ISS_L2[63:]), "mean motion"),
        (_fix(ISS_L1[:20] + "400.69339541" + ISS_L1[32:]), ISS_L2, "epoch day"),
        (_fix(ISS_L1[:18] + "x9" + ISS_L1[20:]), ISS_L2, "epoch year"),
        (_fix(ISS_L1[:53] + " 3879x-4" + ISS_L1[61:]), ISS_L2, "bstar"),
        (ISS_L1, _fix(ISS_L2[:26] + "00074a7" + ISS_L2[33:]), "eccentricity"),
    ],
)
def test_record_errors(l1, l2, fragment):
    good, bad = parse_tle(f"NAME\n{l1}\n{l2}\n")
    if fragment is None:
        assert len(good) == 1 and bad == []
        return
    assert good == []
    assert len(bad) == 1
    assert bad[0].line_number == 1
    assert fragment in bad[0].reason


def test_epoch_year_convention():
    l1 = _fix(ISS_L1[:18] + "57" + ISS_L1[20:])
    assert parse_tle_lines(l1, ISS_L2).epoch.year == 1957
    l1 = _fix(ISS_L1[:18] + "56" + ISS_L1[20:])
    assert parse_tle_lines(l1, ISS_L2).epoch.year == 2056


def test_good_records_survive_bad_neighbours_and_garbage():
    bad_l1 = ISS_L1[:68] + "0"
    text = "\n".join(
        [
            "garbage line",  # 1 (not a name: a blank line follows)
            "",
            ISS_L1,  # 3
            ISS_L2,
            "SAT B",  # 5
            bad_l1,
            ISS_L2,
            "2 orphan line 2",  # 8
            "1 truncated",  # 9
            "SAT C",
            ISS_L1,
            ISS_L2,
            "trailing junk",  # 13
        ]
    )
    good, bad = parse_tle(text)
    assert [e.name for e in good] == ["", "SAT C"]
    assert [r.line_number for r in bad] == [1, 5, 8, 9, 13]
    assert all(isinstance(r, RejectedRecord) for r in bad)


def test_alpha5_round_trip():
    assert alpha5_decode("A0000") == 100000
    assert alpha5_decode("E8493") == 148493
    assert alpha5_decode("J0001") == 180001  # I skipped
    assert alpha5_decode("P0000") == 230000  # O skipped
    assert alpha5_decode("Z9999") == 339999
    assert alpha5_decode("25544") == 25544
    for bad in ("I0000", "O1234", "A12", "a0000", "", "-1234"):
        with pytest.raises(ValueError):
            alpha5_decode(bad)
    for n in (0, 5, 99999, 100000, 180001, 230000, 339999):
        assert alpha5_decode(alpha5_encode(n)) == n
    with pytest.raises(ValueError):
        alpha5_encode(340000)


def test_alpha5_record_round_trip():
    l1 = _fix(ISS_L1[:2] + "E8493" + ISS_L1[7:])
    l2 = _fix(ISS_L2[:2] + "E8493" + ISS_L2[7:])
    (es,), bad = parse_tle(f"{l1}\n{l2}\n")
    assert bad == [] and es.catalog_number == 148493
    text = format_tle(es)
    # zero exponent fields are written as "00000+0" (the source used "00000-0")
    assert text.splitlines() == [_fix(l1.replace("00000-0", "00000+0")), l2]


def test_format_round_trip_iss_exact():
    (es,), _ = parse_tle(f"{ISS_L1}\n{ISS_L2}\n")
    assert format_tle(es).splitlines() == [_fix(ISS_L1.replace("00000-0", "00000+0")), ISS_L2]
    assert parse_tle(format_tle(es))[0] == [es]


def test_format_round_trip_real_catalog(starlink_text):
    lines = [ln.rstrip() for ln in starlink_text.splitlines()]
    good, bad = parse_tle(starlink_text)
    assert bad == [] and len(good) == 10361
    out = "".join(format_tle(e) for e in good).splitlines()
    ref = [ln for ln in lines if ln]
    assert out == ref
    again, bad2 = parse_tle("\n".join(out))
    assert bad2 == [] and again == good


def test_format_from_constructed_element_set():
    from datetime import UTC, datetime

    es = ElementSet(
        catalog_number=270000,
        mean_motion_rev_day=15.05,
        eccentricity=1e-4,
        inclination_deg=53.0,
        raan_deg=359.99999,
        arg_perigee_deg=0.0,
        mean_anomaly_deg=12.5,
        epoch=datetime(2026, 5, 12, 23, 59, 59, 999999, tzinfo=UTC),
        bstar=-1.2345e-5,
        ndot=-3.2e-6,
        intl_designator="2026-001A",
    )
    (back,), bad = parse_tle(format_tle(es))
    assert bad == []
    assert back.catalog_number == 270000
    assert back.intl_designator == "26001A"
    assert back.bstar == pytest.approx(-1.2345e-5)
    assert back.ndot == pytest.approx(-3.2e-6)
    assert abs((back.epoch - es.epoch).total_seconds()) < 1e-3


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text_never_raises(text):
    good, bad = parse_tle(text)
    assert all(isinstance(r, RejectedRecord) for r in bad)
    for e in good:
        assert 0 <= e.eccentricity < 1


_TLE_ALPHABET = st.sampled_from(list("0123456789 .-+ABCUXZ\n"))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 137), st.sampled_from(list("0123456789 .-+AXZ\n"))), max_size=6
    )
)
def test_corrupted_record_never_raises(edits):
    chars = list(f"{ISS_L1}\n{ISS_L2}\n")
    for pos, ch in edits:
        chars[pos] = ch
    good, bad = parse_tle("".join(chars))
    assert len(good) + len(bad) >= 1
    for e in good:
        assert math.isfinite(e.mean_motion_rev_day) and e.mean_motion_rev_day > 0
