"""Units of the request field checks: integer ranges on the fast and the slow path, integral floats."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import GatewayError
from switchboard.headends.validation import FieldSpec, _well_typed, check_spec, model_name_problem
from switchboard.openai_fields import INT64_MAX, INT64_MIN

SPEC = FieldSpec({"n": "integer|null", "seed": "integer", "t": "number", "u": "any"}, {"n": (1, 128)})
VALUES: list[Any] = [None, True, False, 0, 1, 128, 129, -1, 2.0, 2.5, 1e20, -1e20, INT64_MAX, INT64_MAX + 1,
                     INT64_MIN, INT64_MIN - 1, 2**64 - 1, "1", [], {}]


def _expected(field: str, value: Any) -> Any:
    """What the field should hold after the check, or GatewayError: the plain reading of the spec."""
    low, high = {"n": (1, 128), "seed": (INT64_MIN, INT64_MAX)}.get(field, (None, None))
    if field == "u":
        return value
    if value is None:
        return value if field == "n" else GatewayError
    if isinstance(value, bool) or not isinstance(value, int | float):
        return GatewayError
    if field == "t":
        return value
    if isinstance(value, float) and not value.is_integer():
        return GatewayError
    assert low is not None and high is not None
    return int(value) if low <= value <= high else GatewayError


@pytest.mark.parametrize("field", ["n", "seed", "t", "u"])
def test_fast_and_slow_checks_agree_with_the_spec(field: str) -> None:
    for value in VALUES:
        body = {field: value}
        expected = _expected(field, value)
        if _well_typed(dict(body), SPEC):  # the fast path may only accept what needs nothing more
            assert expected is not GatewayError and expected == value and type(expected) is type(value), value
        if expected is GatewayError:
            with pytest.raises(GatewayError) as info:
                check_spec(body, SPEC)
            assert info.value.param == field and info.value.status == 400
        else:
            check_spec(body, SPEC)
            assert body[field] == expected and type(body[field]) is type(expected), (value, body)


def test_range_errors_say_which_bound_and_show_the_value_as_sent() -> None:
    with pytest.raises(GatewayError) as info:
        check_spec({"n": 1e20}, SPEC, prefix="x.")
    assert info.value.param == "x.n" and info.value.code == "integer_above_max_value"
    assert "<= 128, but got 100000000000000000000 instead" in info.value.message
    with pytest.raises(GatewayError) as info:
        check_spec({"n": 0}, SPEC)
    assert info.value.code == "integer_below_min_value" and ">= 1" in info.value.message


@pytest.mark.parametrize(("model", "ok"), [("gpt-4o", True), ("up/café", True), ("a b", True), ("up/😀", False),
                                           ("a\r\nb", False), ("a\x00", False), ("a\u2028", False)])
def test_model_names_must_fit_a_response_header(model: str, ok: bool) -> None:
    assert (model_name_problem(model) is None) is ok
