"""The contract checks of `shared.validation` on the suite's own request types."""

from __future__ import annotations

import math

import pytest
from google.protobuf import descriptor_pool, duration_pb2, struct_pb2, timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import contacts_pb2
from skybridge.orbit.v1 import orbit_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as prov
from skybridge.provisioning.v1 import resources_pb2 as res
from skybridge.threat.v1 import threat_pb2

from shared.errors import InvalidArgument
from shared.validation import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_ITEMS,
    MAX_VIOLATIONS,
    Rules,
    Validator,
)


def paths(message, rules: Rules | None = None) -> dict[str, str]:
    return {v.field: v.description for v in Validator(rules).violations(message)}


def test_a_good_request_has_no_violations():
    request = orbit_pb2.VisibleSatellitesRequest(
        points=[common_pb2.GeodeticPoint(latitude_deg=47.6, longitude_deg=-122.3)],
        time=timestamp_pb2.Timestamp(seconds=1_800_000_000, nanos=5))
    assert paths(request) == {}


def test_an_enum_number_the_enum_does_not_define_names_the_nested_field():
    request = prov.CreatePlanRequest(plan=res.Plan(display_name="Gold"))
    request.plan.terms.priority_class = 77
    found = paths(request)
    assert set(found) == {"plan.terms.priority_class"}
    assert "77 is not a value of PriorityClass" in found["plan.terms.priority_class"]
    watch = prov.WatchEventsRequest(types=[1, 999])
    assert set(paths(watch)) == {"types[1]"}


@pytest.mark.parametrize("seconds,nanos", [(-62_135_596_801, 0), (253_402_300_800, 0),
                                           (0, -1), (0, 1_000_000_000)])
def test_a_timestamp_outside_its_type_is_refused(seconds, nanos):
    request = orbit_pb2.VisibleSatellitesRequest(
        time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    assert set(paths(request)) == {"time"}


def test_timestamps_at_the_ends_of_their_range_pass():
    for seconds, nanos in ((-62_135_596_800, 0), (253_402_300_799, 999_999_999)):
        request = orbit_pb2.VisibleSatellitesRequest(
            time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
        assert paths(request) == {}


@pytest.mark.parametrize("seconds,nanos", [(315_576_000_001, 0), (1, -5), (-1, 5),
                                           (0, 1_000_000_000)])
def test_a_duration_outside_its_type_is_refused(seconds, nanos):
    request = orbit_pb2.PropagateRequest(grid=orbit_pb2.TimeGrid(
        step=duration_pb2.Duration(seconds=seconds, nanos=nanos)))
    assert set(paths(request)) == {"grid.step"}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_in_scalars_lists_and_arrays(value):
    point = common_pb2.GeodeticPoint(latitude_deg=1.0, longitude_deg=value)
    request = orbit_pb2.VisibleSatellitesRequest(points=[point, point])
    assert set(paths(request)) == {"points[0].longitude_deg", "points[1].longitude_deg"}
    array = common_pb2.DoubleArray(shape=[1, 3],
                                   packed=common_pb2.PackedDoubles(values=[1.0, value, 0.0]))
    assert set(paths(orbit_pb2.VisibleSatellitesRequest(point_array=array))) == {"point_array"}


def test_a_double_array_must_fill_its_shape():
    bad = common_pb2.DoubleArray(shape=[2, 3], le_bytes=b"\0" * 8)
    assert "needs 6 values" in paths(orbit_pb2.VisibleSatellitesRequest(
        point_array=bad))["point_array"]
    many = common_pb2.DoubleArray(shape=[2] * 100_000, le_bytes=b"\0" * 16)
    assert "at most 8 dimensions" in paths(orbit_pb2.VisibleSatellitesRequest(
        point_array=many))["point_array.shape"]
    odd = common_pb2.DoubleArray(shape=[1], le_bytes=b"\0" * 7)
    assert set(paths(orbit_pb2.VisibleSatellitesRequest(
        point_array=odd))) == {"point_array.le_bytes"}


def test_nan_inside_a_struct_is_found_through_the_recursive_type():
    inner = struct_pb2.Struct()
    inner.update({"deep": {"list": [1.0, 2.0]}})
    inner["deep"]["list"].append(float("nan"))
    found = paths(inner)
    assert list(found) == ["fields['deep'].struct_value.fields['list'].list_value.values[2]"
                           ".number_value"]


def test_more_than_one_member_of_a_declared_group_is_refused_at_the_message():
    rules = Rules(at_most_one={"skybridge.orbit.v1.VisibleSatellitesRequest":
                               [("points", "point_array")],
                               "skybridge.orbit.v1.SatelliteSelection":
                               [("catalog_numbers", "satellites", "group", "all")]})
    request = orbit_pb2.VisibleSatellitesRequest(
        points=[common_pb2.GeodeticPoint()],
        point_array=common_pb2.DoubleArray(shape=[1, 3], le_bytes=b"\0" * 24))
    assert "not points and point_array" in paths(request, rules)["points"]
    selection = orbit_pb2.PropagateRequest(selection=orbit_pb2.SatelliteSelection(
        group="groups/x", all=True))
    assert set(paths(selection, rules)) == {"selection"}
    assert paths(orbit_pb2.PropagateRequest(selection=orbit_pb2.SatelliteSelection(
        all=True)), rules) == {}


@pytest.mark.parametrize("text", ["a\x00b", "bell\x07", "\x7f", "\x85", "abc\u202edcba",
                                  "\u2066isolate"])
def test_control_and_bidi_characters_are_refused_in_every_string(text):
    request = prov.CreateCustomerRequest(customer=res.Customer(display_name=text))
    assert set(paths(request)) == {"customer.display_name"}


def test_line_breaks_pass_in_text_but_not_in_a_name():
    assert paths(orbit_pb2.ImportElementSetsRequest(text="ISS\n1 ...\r\n2 ...\t")) == {}
    assert set(paths(orbit_pb2.GetSatelliteRequest(name="satellites/1\n"))) == {"name"}
    assert set(paths(orbit_pb2.ImportElementSetsRequest(request_id="a\tb"))) == {"request_id"}
    assert set(paths(contacts_pb2.ReserveContactRequest(
        request_id="r", spacecraft="x\u2028y"), Rules(names=frozenset(
            {"skybridge.linkbroker.v1.ReserveContactRequest.spacecraft"})))) == {"spacecraft"}


def test_strings_and_lists_beyond_their_caps_are_refused_without_reading_them():
    long = "x" * (DEFAULT_MAX_CHARS + 1)
    assert "at most" in paths(prov.CreateCustomerRequest(
        customer=res.Customer(display_name=long)))["customer.display_name"]
    many = prov.BatchCheckEntitlementsRequest(
        checks=[prov.CheckEntitlementRequest()] * (DEFAULT_MAX_ITEMS + 1))
    assert set(paths(many)) == {"checks"}
    # a declared cap overrides the default, either way
    rules = Rules(max_items={"skybridge.provisioning.v1.BatchCheckEntitlementsRequest.checks": 3},
                  max_chars={"skybridge.orbit.v1.ImportElementSetsRequest.text": 10 ** 8})
    assert set(paths(prov.BatchCheckEntitlementsRequest(
        checks=[prov.CheckEntitlementRequest()] * 4), rules)) == {"checks"}
    assert paths(orbit_pb2.ImportElementSetsRequest(text=long), rules) == {}


def test_a_nested_repeated_path_names_the_index():
    request = prov.BatchCheckEntitlementsRequest(checks=[
        prov.CheckEntitlementRequest(terminal="terminals/a") for _ in range(4)])
    request.checks[3].terminal = "terminals/\x00"
    assert set(paths(request)) == {"checks[3].terminal"}


def test_output_only_fields_are_ignored():
    satellite = orbit_pb2.Satellite(
        create_time=timestamp_pb2.Timestamp(seconds=10 ** 15))
    assert paths(satellite) == {}


def test_violations_are_capped_and_validate_raises_with_all_of_them():
    request = orbit_pb2.VisibleSatellitesRequest(points=[
        common_pb2.GeodeticPoint(latitude_deg=math.nan) for _ in range(100)])
    with pytest.raises(InvalidArgument) as caught:
        Validator().validate(request)
    assert 1 <= len(caught.value.violations) <= MAX_VIOLATIONS
    assert caught.value.violations[0].field == "points[0].latitude_deg"


def test_detections_are_checked_column_by_column():
    batch = threat_pb2.DetectionBatch(
        base_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
        time_offsets_s=common_pb2.DoubleArray(shape=[2], packed=common_pb2.PackedDoubles(
            values=[0.0, math.inf])))
    found = paths(threat_pb2.IngestDetectionsRequest(batch=batch))
    assert set(found) == {"batch.time_offsets_s"} and "value 1 is inf" in found[
        "batch.time_offsets_s"]


def test_every_declared_rule_names_a_field_or_message_of_the_contracts():
    """A rule with a typo would silently check nothing."""
    from services.linkbroker.api import LinkBrokerServicer
    from services.linkbroker.contacts_api import GroundStationServicer
    from services.orbit.api import OrbitServicer
    from services.provisioning.api import ProvisioningServicer
    from services.threat.api import ThreatServicer

    pool = descriptor_pool.Default()
    for servicer in (OrbitServicer, ProvisioningServicer, LinkBrokerServicer,
                     GroundStationServicer, ThreatServicer):
        rules: Rules | None = getattr(servicer, "request_rules", None)
        if rules is None:
            continue
        for name in (*rules.max_items, *rules.max_chars, *rules.names):
            pool.FindFieldByName(name)
        for message, groups in rules.at_most_one.items():
            descriptor = pool.FindMessageTypeByName(message)
            for group in groups:
                assert set(group) <= set(descriptor.fields_by_name), (message, group)
