"""One request_id shape for every service (AIP-155): 1 to 128 printable characters."""

from __future__ import annotations

import uuid

from shared.idempotency import MAX_REQUEST_ID, request_id_problem


def test_up_to_128_printable_characters():
    assert MAX_REQUEST_ID == 128
    for good in (str(uuid.uuid4()), "x", "é" * MAX_REQUEST_ID):
        assert request_id_problem(good, required=True) is None
    for bad in ("x" * (MAX_REQUEST_ID + 1), "a\nb", "tab\there", "\u202eevil"):
        assert request_id_problem(bad, required=True) == \
            f"must be 1 to {MAX_REQUEST_ID} printable characters"


def test_an_empty_one_is_a_problem_only_where_a_key_is_needed():
    assert request_id_problem("", required=False) is None
    assert "required" in request_id_problem("", required=True)
