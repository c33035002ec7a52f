"""The exports' pure parts: fixed-point text against Python's own formatting, OBJECT_ID
forms, the sample instants of a window, and the document's batches and chunks."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.orbit import export_oem
from services.orbit.catalog import CatalogSnapshot
from services.orbit.export_app import (
    ExportFormat,
    plan_export,
    sample_count,
    sample_times,
)
from services.orbit.walker import WalkerShell, walker_shells


def test_fixed_point_prints_what_python_prints():
    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.normal(size=(2000, 3)) * rng.choice([1e-7, 1e-3, 1.0, 7e3, 4e5], (2000, 1)),
        [[0.0, -0.0, 5e-7], [-5e-7, 9999.9999995, -1e-9], [123456.0, -7.0, 0.5e-6]]])
    for decimals in (6, 9):
        text = export_oem.fixed_point(values, decimals)
        assert text.dtype == np.uint8 and text.shape[0] == values.shape[0]
        rows = [r.tobytes().decode("ascii") for r in text]
        assert len({len(r) for r in rows}) == 1  # one width per call: aligned columns
        for row, value in zip(rows, values, strict=True):
            got = row.split()
            assert row.startswith(" ") and len(got) == 3
            for g, v in zip(got, value, strict=True):
                want = f"{v:.{decimals}f}"
                if float(want) == 0.0:
                    want = want.lstrip("-")  # no "-0.000000"
                scaled = abs(v) * 10 ** decimals
                tie = abs(scaled - np.floor(scaled) - 0.5) <= 4 * np.spacing(scaled)
                if not tie:
                    assert g == want, (g, v)
                else:  # a tie (to an ulp of the scaled value) may go either way
                    assert abs(float(g) - v) <= 0.5 * 10.0 ** -decimals + 4 * abs(np.spacing(v))


def test_fixed_point_refuses_what_it_cannot_print():
    for bad in (np.nan, np.inf, 1e13):
        with pytest.raises(ValueError):
            export_oem.fixed_point(np.array([[1.0, bad]]), 6)
    assert export_oem.fixed_point(np.zeros((0, 3)), 6).shape == (0, 3 * 10)


def test_epoch_text_is_iso_to_the_microsecond():
    when = datetime(2026, 5, 12, 8, 0, 0, 250001, tzinfo=UTC)
    us = int(when.timestamp()) * 1_000_000 + when.microsecond
    assert export_oem.epoch_text(np.array([us])).tobytes() == b"2026-05-12T08:00:00.250001"


@pytest.mark.parametrize(("given", "expected"), [
    ("98067A", "1998-067A"), ("05037B", "2005-037B"), ("57001A", "1957-001A"),
    ("56001ABC", "2056-001ABC"), ("2019-074A", "2019-074A"), ("", "25544"),
    ("junk", "25544"), (" 2019-074a ", "2019-074A")])
def test_object_id_is_the_international_designator_or_the_catalog_number(given, expected):
    assert export_oem.international_designator(given, 25544) == expected


def test_samples_cover_the_window_and_end_on_it():
    s = 1_000_000
    assert sample_times(0, 3 * s, s).tolist() == [0, s, 2 * s, 3 * s]
    assert sample_times(0, 3 * s + 1, s).tolist() == [0, s, 2 * s, 3 * s, 3 * s + 1]
    assert sample_times(5, 6, s).tolist() == [5, 6]
    assert sample_count(0, 90 * s, 60 * s) == 3


def test_batches_are_bounded_and_in_catalog_order():
    sets = walker_shells([WalkerShell(5, 7, 1, 550.0, 53.0, name="T")],
                         datetime(2026, 5, 12, tzinfo=UTC), 100)
    snap = CatalogSnapshot(1, None, tuple(sets))
    times = sample_times(0, 99 * 60_000_000, 60_000_000)  # 100 samples
    plan = plan_export(ExportFormat.OEM, snap, np.arange(35)[::-1], times, batch_samples=450)
    assert plan.columns.tolist() == list(range(35))
    sizes = [j - i for i, j in plan.batches]
    assert sizes == [4] * 8 + [3] and plan.batches[0][0] == 0 and plan.batches[-1][1] == 35
    # a satellite longer than the budget is a batch of its own
    one = plan_export(ExportFormat.CZML, snap, np.arange(3), times, batch_samples=10)
    assert one.batches == ((0, 1), (1, 2), (2, 3))
    assert one.file_name == "skybridge-ephemeris-19700101T000000Z.czml"
