import pytest

from services.linkbroker.regions import (
    UnknownRegionError,
    is_valid_region_name,
    load_regions,
    normalize_region_name,
    require_region,
)

# Azure pairs that are one-way by design (the partner pairs elsewhere).
ONE_WAY_PAIRS = {
    ("westus3", "eastus"),
    ("brazilsouth", "southcentralus"),
    ("brazilsoutheast", "brazilsouth"),
    ("westindia", "southindia"),
}


def test_catalogue_size_and_uniqueness():
    t = load_regions()
    assert len(t) >= 40
    assert len(set(t.names.tolist())) == len(t)


def test_coordinates_in_range_and_known_values():
    t = load_regions()
    assert ((t.latitude_deg >= -90) & (t.latitude_deg <= 90)).all()
    assert ((t.longitude_deg >= -180) & (t.longitude_deg <= 180)).all()
    east = t.get("eastus")
    assert (east.latitude_deg, east.longitude_deg) == (37.3719, -79.8164)
    w2 = t.get("westus2")
    assert (w2.latitude_deg, w2.longitude_deg) == (47.233, -119.852)
    assert t.get("northeurope").geography_group == "Europe"
    assert t.get("australiaeast").latitude_deg < 0


def test_pairs_exist_and_are_symmetric_where_azure_pairs_them():
    t = load_regions()
    for r in t.regions:
        p = r.paired_region
        if p is None:
            continue
        assert p in t or p in t.unlisted_pairs, (r.name, p)
        if p in t.unlisted_pairs or (r.name, p) in ONE_WAY_PAIRS:
            continue
        assert t.get(p).paired_region == r.name, (r.name, p)


def test_name_validation():
    assert normalize_region_name("East US 2") == "eastus2"
    assert normalize_region_name("west-us-2") == "westus2"
    assert is_valid_region_name("uksouth")
    assert not is_valid_region_name("uk south!")
    assert not is_valid_region_name("")
    assert "East US" in load_regions()
    assert "marsnorth" not in load_regions()
    assert require_region("UK South").name == "uksouth"
    with pytest.raises(UnknownRegionError):
        require_region("marsnorth")
    with pytest.raises(UnknownRegionError):
        require_region("bad/name")


def test_indices_and_select():
    t = load_regions()
    idx = t.indices_of(["westus2", "eastus"])
    assert t.names[idx].tolist() == ["westus2", "eastus"]
    sub = t.select(t.latitude_deg < 0)
    assert len(sub) > 0 and (sub.latitude_deg < 0).all()
    assert sub.index_of(sub.names[0]) == 0
