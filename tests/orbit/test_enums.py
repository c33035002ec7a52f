"""The orbit service's kinds and formats are StrEnums whose values are the spellings stored
in the tables and used before they were enums: renaming a member must not change them."""

from __future__ import annotations

from services.orbit.catalog import GroupKind
from services.orbit.elements import ElementFormat
from services.orbit.omm import detect_format
from services.orbit.states import FRAMES, Frame
from services.orbit.tables import GROUP_KINDS


def test_stored_and_internal_spellings_are_unchanged():
    assert [k.value for k in GroupKind] == ["constellation", "sensors", "import"]
    assert GROUP_KINDS == ("constellation", "sensors", "import")
    assert [f.value for f in ElementFormat] == ["tle", "omm_json", "omm_csv", "omm_xml"]
    assert FRAMES == ("teme", "itrf", "geodetic") and Frame("itrf") is Frame.ITRF


def test_detected_formats_are_members():
    assert detect_format("<omm/>") is ElementFormat.OMM_XML
    assert detect_format('[{"NORAD_CAT_ID": 1}]') is ElementFormat.OMM_JSON
    assert detect_format("OBJECT_NAME,NORAD_CAT_ID\nX,1\n") is ElementFormat.OMM_CSV
    assert detect_format("ISS\n1 25544U ...\n2 25544 ...\n") is ElementFormat.TLE
