"""spec.trafficRouting: one router, and what each router can express."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.api.traffic import TrafficRouting


def _routing(**fields: Any) -> TrafficRouting:
    return TrafficRouting.model_validate({"stableService": "payments", **fields})


def test_one_router_with_defaults() -> None:
    routing = _routing(gatewayAPI={"httpRoute": "payments"})
    assert routing.kind == "gatewayAPI"
    assert routing.canary_service_name == "payments-canary"
    assert routing.dynamic_stable_scale is False
    assert _routing(istio={"virtualService": "vs"}, canaryService="pc").canary_service_name == "pc"
    dumped = routing.model_dump(by_alias=True, exclude_none=True)
    assert dumped["gatewayAPI"] == {"httpRoute": "payments"}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"gatewayAPI": {"httpRoute": "a"}, "nginx": {"stableIngress": "b"}},
        {
            "nginx": {"stableIngress": "b"},
            "headerRoute": {"match": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        },
        {"istio": {"virtualService": "vs"}, "headerRoute": {"match": []}},
        {"gatewayAPI": {"httpRoute": "a", "rules": ["Not_A_Name"]}},
        {"gatewayAPI": {"httpRoute": "a"}, "headerRoute": {"match": [{"name": "bad header"}]}},
    ],
)
def test_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _routing(**fields)
