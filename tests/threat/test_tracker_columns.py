import numpy as np
import pytest

from services.threat.tracker import Status, TrackColumns, Tracker
from services.threat.tracker.lifecycle import CONFIRMED, DROPPED, STATUS_NAMES, TENTATIVE


def _cols(k: int, m: int = 2, start: int = 1) -> TrackColumns:
    rng = np.random.default_rng(k + 10 * start)
    mu = rng.random((k, m))
    return TrackColumns.of(
        track_id=np.arange(start, start + k), status=np.arange(k) % 4, time_s=rng.random(k),
        x=rng.normal(size=(k, m, 6)), P=rng.normal(size=(k, m, 6, 6)), mu=mu / mu.sum(1, keepdims=True),
        hit_bits=np.arange(k, dtype=np.uint64) * 3, n_opportunities=np.arange(k) + 1,
        n_hits=np.arange(k), created_s=rng.random(k), last_hit_s=rng.random(k),
    )


def test_dtypes_and_empty():
    c = _cols(3)
    assert (c.track_id.dtype, c.status.dtype, c.hit_bits.dtype, c.x.dtype) == (
        np.int64, np.int8, np.uint64, np.float64)
    e = TrackColumns.empty(3)
    assert len(e) == 0 and e.n_models == 3 and e.P.shape == (0, 3, 6, 6)


def test_take_by_mask_and_by_index():
    c = _cols(5)
    mask = np.array([True, False, True, False, True])
    by_mask = c.take(mask)
    assert by_mask.track_id.tolist() == [1, 3, 5]
    np.testing.assert_array_equal(by_mask.P, c.P[[0, 2, 4]])
    np.testing.assert_array_equal(by_mask.mu, c.mu[[0, 2, 4]])
    by_index = c.take(np.array([4, 0]))
    assert by_index.track_id.tolist() == [5, 1]
    np.testing.assert_array_equal(by_index.x, c.x[[4, 0]])
    assert by_index.hit_bits.tolist() == [12, 0]
    assert c.take(np.array([0, 2, 4])).equals(by_mask)
    # a take is a copy: writing to it leaves the source alone
    by_mask.n_hits[:] = 99
    assert c.n_hits.tolist() == [0, 1, 2, 3, 4]


def test_concat_of_parts_is_the_whole():
    c = _cols(6)
    parts = [c.take(slice(0, 2)), c.take(slice(2, 2)), c.take(slice(2, 6))]
    whole = TrackColumns.concat(parts)
    assert whole.equals(c) and len(whole) == 6
    assert TrackColumns.concat([TrackColumns.empty(2), c]).equals(c)
    with pytest.raises(ValueError):
        TrackColumns.concat([])


def test_length_and_model_mismatch_refused():
    c = _cols(3)
    with pytest.raises(ValueError, match="n_hits"):
        TrackColumns(c.track_id, c.status, c.time_s, c.x, c.P, c.mu, c.hit_bits,
                     c.n_opportunities, c.n_hits[:2], c.created_s, c.last_hit_s)
    with pytest.raises(ValueError, match="model"):
        TrackColumns(c.track_id, c.status, c.time_s, c.x, c.P[:, :1], c.mu, c.hit_bits,
                     c.n_opportunities, c.n_hits, c.created_s, c.last_hit_s)


def test_round_trip_through_tracker_state_is_identical():
    trk = Tracker()
    m = trk.imm.n_models
    cols = _cols(4, m=m)
    state = trk.export_state()
    state = type(state)(state.epoch, 5, 10.0, 11.0, 7, cols)
    trk.restore(state)
    again = trk.export_state()
    assert again.tracks.equals(cols) and again.tracks is not cols
    assert again.tracks.x is not cols.x  # restore and export copy
    assert (again.next_id, again.processed_until_s, again.latest_seen_s,
            again.detections_processed) == (5, 10.0, 11.0, 7)
    for name in ("track_id", "status", "x", "P", "mu", "hit_bits", "last_hit_s"):
        assert np.array_equal(getattr(again, name), getattr(cols, name))
    with pytest.raises(ValueError, match="models"):
        trk.restore(type(state)(None, 1, 0.0, 0.0, 0, _cols(2, m=m + 1)))


def test_status_codes_are_an_int_enum_with_unchanged_values():
    assert [int(s) for s in Status] == [0, 1, 2, 3]
    assert (TENTATIVE, CONFIRMED, DROPPED) == (Status.TENTATIVE, Status.CONFIRMED, Status.DROPPED)
    assert STATUS_NAMES == ("tentative", "confirmed", "coasting", "dropped")
    st = np.array([0, 3, 1, 3], np.int8)
    assert (st == Status.DROPPED).tolist() == [False, True, False, True]
    st[st == Status.DROPPED] = Status.COASTING
    assert st.dtype == np.int8 and st.tolist() == [0, 2, 1, 2]
