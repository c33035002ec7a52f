"""One page-size rule and bound page tokens for every list of the suite (AIP-158)."""

from __future__ import annotations

import pytest

from shared.errors import InvalidArgument, Violations
from shared.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_token,
    encode_token,
    page_size,
)


def test_zero_is_the_default_and_a_size_above_the_maximum_is_the_maximum():
    assert (DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) == (100, 1000)
    assert page_size(0) == DEFAULT_PAGE_SIZE
    assert page_size(7) == 7
    assert page_size(MAX_PAGE_SIZE) == MAX_PAGE_SIZE
    assert page_size(2**31 - 1) == MAX_PAGE_SIZE


def test_a_negative_size_names_the_field():
    with pytest.raises(InvalidArgument) as refused:
        page_size(-1)
    assert [v.field for v in refused.value.violations] == ["page_size"]
    check = Violations()  # gathered with the request's other problems
    assert page_size(-2**31, check, field="query.page_size") == DEFAULT_PAGE_SIZE
    assert [v.field for v in check.items] == ["query.page_size"]


def test_a_token_answers_only_the_request_it_came_from():
    token = encode_token("links:customers/c1", ["2026-12-06", 42])
    assert decode_token(token, "links:customers/c1") == ["2026-12-06", 42]
    assert decode_token("", "links:customers/c1") is None
    for scope, bad in (("links:customers/c2", token), ("links:customers/c1", "%%%")):
        with pytest.raises(InvalidArgument) as refused:
            decode_token(bad, scope)
        assert [v.field for v in refused.value.violations] == ["page_token"]
