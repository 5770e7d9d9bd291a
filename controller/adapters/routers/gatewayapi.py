"""Gateway API router: weights on an HTTPRoute's backendRefs.

In each steered rule (the named ones, else every rule with a backendRef to
the stable Service) the stable backendRef gets weight 100-N and a backendRef
to the canary Service gets N; at 0 the canary backendRef is removed again.
The header route is one extra rule per steered rule, named
`canary-header-<i>`: the same matches, filters and timeouts, plus the header
matches, sending only to the canary. Gateway API ranks a match with more
headers above the same match without them, so it wins wherever it applies.

The HTTPRoute schema makes `spec.rules` one atomic list, so server-side apply
cannot share it field by field: the controller applies `spec.rules` only
(copied from the live route with the weights changed, so other rules,
filters and timeouts stay as they are) and nothing else. Whoever owns
parentRefs, hostnames, labels or annotations keeps them; if another manager
owns `spec.rules`, the apply conflicts and the conflict is reported.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from controller.adapters.routers.applying import HTTP_ROUTE, Objects, apply_body
from controller.adapters.routers.protocol import RouteIntent
from controller.adapters.routers.services import RouterBase, ServiceChecks, merged
from controller.api.traffic import HeaderRoute, RouterKind, TrafficRouting
from controller.engine.observations import RouteView

HEADER_RULE_PREFIX = "canary-header-"
MAX_RULES, MAX_MATCHES = 16, 128
"""spec.rules maxItems, and the CEL cap on matches across rules (HTTPRoute v1)."""
_DEFAULT_MATCHES = [{"path": {"type": "PathPrefix", "value": "/"}}]

Rule = dict[str, Any]


def is_service_ref(ref: dict[str, Any], service: str) -> bool:
    return (
        ref.get("group") in (None, "")
        and ref.get("kind", "Service") == "Service"
        and ref.get("name") == service
        and ref.get("namespace") in (None, "")
    )


def is_header_rule(rule: Rule) -> bool:
    return str(rule.get("name") or "").startswith(HEADER_RULE_PREFIX)


def steered(rules: list[Rule], stable: str, names: list[str] | None) -> list[int]:
    """Indexes of the rules whose weights the controller sets."""
    found = []
    for i, rule in enumerate(rules):
        if is_header_rule(rule):
            continue
        if names is not None:
            if rule.get("name") in names:
                found.append(i)
        elif any(is_service_ref(r, stable) for r in rule.get("backendRefs") or []):
            found.append(i)
    return found


def rule_weight(rule: Rule, stable: str, canary: str) -> int:
    """The canary's share, in percent, of what this rule sends to the two Services."""
    refs = rule.get("backendRefs") or []
    stable_w = sum(int(r.get("weight", 1)) for r in refs if is_service_ref(r, stable))
    canary_w = sum(int(r.get("weight", 1)) for r in refs if is_service_ref(r, canary))
    total = stable_w + canary_w
    return round(100 * canary_w / total) if total else 0


def _with_headers(match: dict[str, Any], header_route: HeaderRoute) -> dict[str, Any]:
    ours = {h.name.lower() for h in header_route.match}
    kept = [h for h in match.get("headers") or [] if str(h.get("name", "")).lower() not in ours]
    added = [{"type": h.type, "name": h.name, "value": h.value} for h in header_route.match]
    return {**match, "headers": kept + added}


def _weighted(rule: Rule, stable: str, canary: str, weight: int) -> Rule:
    refs = [r for r in rule.get("backendRefs") or [] if not is_service_ref(r, canary)]
    stable_refs = [r for r in refs if is_service_ref(r, stable)]
    out = []
    for ref in refs:
        out.append({**ref, "weight": 100 - weight} if is_service_ref(ref, stable) else ref)
    if weight > 0 and stable_refs:
        template = stable_refs[0]
        canary_ref = {k: v for k, v in template.items() if k not in ("name", "weight", "filters")}
        out.append({**canary_ref, "name": canary, "weight": weight})
    return {**rule, "backendRefs": out}


def _header_rule(rule: Rule, index: int, stable: str, canary: str, hr: HeaderRoute) -> Rule:
    base = {k: copy.deepcopy(v) for k, v in rule.items() if k not in ("name", "backendRefs")}
    matches = rule.get("matches") or _DEFAULT_MATCHES
    stable_ref = next(r for r in rule.get("backendRefs") or [] if is_service_ref(r, stable))
    ref = {k: v for k, v in stable_ref.items() if k not in ("name", "weight", "filters")}
    return {
        **base,
        "name": f"{HEADER_RULE_PREFIX}{index}",
        "matches": [_with_headers(m, hr) for m in matches],
        "backendRefs": [{**ref, "name": canary, "weight": 1}],
    }


def render_rules(
    rules: list[Rule],
    routing: TrafficRouting,
    names: list[str] | None,
    weight: int,
    header_route: HeaderRoute | None,
) -> list[Rule]:
    """The route's rules with the canary at `weight`% and the header route on or off."""
    stable, canary = routing.stable_service, routing.canary_service_name
    targets = set(steered(rules, stable, names))
    out: list[Rule] = []
    k = 0
    for i, rule in enumerate(rules):
        if is_header_rule(rule):
            continue
        if i not in targets:
            out.append(rule)
            continue
        if header_route is not None and any(
            is_service_ref(r, stable) for r in rule.get("backendRefs") or []
        ):
            out.append(_header_rule(rule, k, stable, canary, header_route))
        k += 1
        out.append(_weighted(rule, stable, canary, weight))
    return out


def _parent_name(ref: Mapping[str, Any]) -> str:
    kind = ref.get("kind", "Gateway")
    name = "/".join(str(p) for p in (ref.get("namespace"), ref.get("name")) if p)
    section = f" ({ref['sectionName']})" if ref.get("sectionName") else ""
    return f"{kind} {name}{section}"


def _explained(condition: Mapping[str, Any]) -> str:
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return ": ".join(p for p in (reason, message) if p) or f"status {condition.get('status')}"


_GATEWAY_GROUP = "gateway.networking.k8s.io"


def _parent_key(ref: Mapping[str, Any], namespace: str) -> tuple[Any, ...]:
    """A parentRef with the API's defaults filled in, to match status to spec."""
    return (
        ref.get("group", _GATEWAY_GROUP) or _GATEWAY_GROUP,
        ref.get("kind", "Gateway") or "Gateway",
        ref.get("namespace") or namespace,
        ref.get("name"),
        ref.get("sectionName"),
        ref.get("port"),
    )


def _names_other_backend(condition: Mapping[str, Any], ours: Sequence[str]) -> bool:
    """The gateway's message names a backend, and none of the Services this release steers."""
    message = str(condition.get("message") or "")
    named = (re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", message) for s in ours)
    return bool(message and ours) and not any(named)


def gateway_verdict(
    route: Mapping[str, Any], services: Sequence[str] = ()
) -> tuple[str | None, str | None]:
    """(rejected, pending) from the gateways' own report in `status.parents`.

    - pending: a gateway has not yet reported on the latest generation (its
      conditions carry an older `observedGeneration`, or Accepted is Unknown);
    - rejected: the gateways that report have all refused the route, or one
      that accepted it cannot resolve its backends (it answers requests for
      them with errors; the canary's own metrics would see no traffic).

    Only reports for the route's current `spec.parentRefs` count: an entry
    left behind by a deleted Gateway never catches up and must not hold a
    release. An unresolved backend whose message names only other backends
    (another team's rule on the same route) is not ours to hold for; one
    that names `services` (stable, canary), or names nothing, is. A gateway
    that refuses the route while another accepts it does not serve it, and
    is no reason to hold. No report at all (no gateway controller watches
    this route, or none is installed) cannot be told apart from a slow one;
    it is read as "as the object says", which is all there is.
    """
    meta = route.get("metadata") or {}
    name, generation = meta.get("name", ""), meta.get("generation")
    namespace = meta.get("namespace") or ""
    wanted = {_parent_key(r, namespace) for r in (route.get("spec") or {}).get("parentRefs") or []}
    parents = ((route.get("status") or {}).get("parents")) or []
    behind: list[str] = []
    refused: list[str] = []
    unresolved: list[str] = []
    accepted = 0
    for parent in parents:
        ref = parent.get("parentRef") or {}
        if wanted and _parent_key(ref, namespace) not in wanted:
            continue  # a report for a parent the route no longer names
        who = _parent_name(ref)
        conditions = {c.get("type"): c for c in parent.get("conditions") or []}
        seen = [
            c.get("observedGeneration")
            for c in conditions.values()
            if c.get("type") in ("Accepted", "ResolvedRefs")
        ]
        stale = [g for g in seen if g is not None and generation is not None and g < generation]
        accepted_c = conditions.get("Accepted")
        if stale or accepted_c is None or accepted_c.get("status") not in ("True", "False"):
            last = f" (it last saw generation {min(stale)})" if stale else ""
            behind.append(f"{who}{last}")
            continue
        if accepted_c.get("status") == "False":
            refused.append(f"{who}: {_explained(accepted_c)}")
            continue
        accepted += 1
        resolved = conditions.get("ResolvedRefs")
        broken = resolved is not None and resolved.get("status") != "True"
        if broken and resolved is not None and not _names_other_backend(resolved, services):
            unresolved.append(f"{who}: {_explained(resolved)}")
    rejected = None
    if unresolved:
        rejected = f"HTTPRoute {name}: backends not resolved by " + "; ".join(unresolved)
    elif refused and not accepted and not behind:
        rejected = f"HTTPRoute {name} not accepted by " + "; ".join(refused)
    pending = None
    if behind:
        at = f" generation {generation} of" if generation is not None else ""
        pending = f"waiting for {', '.join(behind)} to process{at} HTTPRoute {name}"
    return rejected, pending


class GatewayAPIRouter(RouterBase):
    kind: RouterKind = "gatewayAPI"

    def __init__(
        self,
        objects: Objects,
        release: dict[str, Any],
        routing: TrafficRouting,
        services: ServiceChecks,
    ) -> None:
        assert routing.gateway_api is not None
        super().__init__(objects, release, routing, services)
        self.name = routing.gateway_api.http_route
        self.names = routing.gateway_api.rules

    def _read(self) -> tuple[dict[str, Any] | None, list[Rule]]:
        live = self.objects.get(HTTP_ROUTE, self.namespace, self.name)
        rules = list(((live or {}).get("spec") or {}).get("rules") or [])
        return live, rules

    def _state(self, rules: list[Rule]) -> tuple[int | None, bool]:
        targets = steered(rules, self.routing.stable_service, self.names)
        if not targets:
            return None, any(is_header_rule(r) for r in rules)
        weight = rule_weight(
            rules[targets[0]], self.routing.stable_service, self.routing.canary_service_name
        )
        return weight, any(is_header_rule(r) for r in rules)

    def _body(
        self, live: dict[str, Any], rules: list[Rule], weight: int, header: bool
    ) -> dict[str, Any]:
        header_route = self.routing.header_route if header else None
        rendered = render_rules(rules, self.routing, self.names, weight, header_route)
        version = live["metadata"].get("resourceVersion")
        return apply_body(HTTP_ROUTE, self.namespace, self.name, version, spec={"rules": rendered})

    def _limits_problem(self, rules: list[Rule]) -> str | None:
        """The HTTPRoute schema's limits, for the rules at their largest (canary and header on)."""
        full = render_rules(rules, self.routing, self.names, 1, self.routing.header_route)
        matches = sum(len(r.get("matches") or []) for r in full)
        if len(full) > MAX_RULES or matches > MAX_MATCHES:
            return (
                f"HTTPRoute {self.name} would need {len(full)} rules and {matches} matches with "
                f"the canary's backendRefs and header rules; the HTTPRoute schema allows "
                f"{MAX_RULES} and {MAX_MATCHES}: steer fewer rules (gatewayAPI.rules)"
            )
        return None

    def verify(self, intent: RouteIntent) -> RouteView:
        live, rules = self._read()
        if live is None:
            return RouteView(None, problem=f"HTTPRoute {self.name} not found")
        weight, header = self._state(rules)
        if weight is None:
            if self.names:
                missing = f"HTTPRoute {self.name} has no rule named {', '.join(self.names)}"
            else:
                missing = (
                    f"HTTPRoute {self.name} has no rule with a backendRef to "
                    f"Service {self.routing.stable_service}"
                )
            return RouteView(None, header, problem=missing)
        unsteerable = [
            str(rules[i].get("name") or i)
            for i in steered(rules, self.routing.stable_service, self.names)
            if not any(
                is_service_ref(r, self.routing.stable_service)
                for r in rules[i].get("backendRefs") or []
            )
        ]
        problem = (
            f"HTTPRoute {self.name} rule {', '.join(unsteerable)} has no backendRef to "
            f"Service {self.routing.stable_service}"
            if unsteerable
            else self._limits_problem(rules) or self.services.stable_problem()
        )
        conflict: str | None = None
        refused: str | None = None
        if problem is None and (weight, header) != (intent.weight, intent.header_route):
            body = self._body(live, rules, intent.weight, intent.header_route)
            conflict, refused = self.objects.blocked(HTTP_ROUTE, body)
        ours = (self.routing.stable_service, self.routing.canary_service_name)
        rejected, pending = gateway_verdict(live, ours)
        rejected = refused or rejected
        return RouteView(
            weight, header, conflict=conflict, problem=problem, rejected=rejected, pending=pending
        )

    def _apply(self, weight: int | None, header: bool | None) -> tuple[int, bool]:
        live, rules = self._read()
        if live is None:
            raise LookupError(f"HTTPRoute {self.name} not found")
        new_weight, new_header = merged(self._state(rules), weight, header)
        if new_weight > 0 or new_header:
            self.services.ensure_canary_service()
        applied = self.objects.apply(HTTP_ROUTE, self._body(live, rules, new_weight, new_header))
        result = self._state(list((applied.get("spec") or {}).get("rules") or []))
        return result[0] or 0, result[1]
