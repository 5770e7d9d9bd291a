"""The environment gate: the new pod template has every variable it needs, none from tests.

The checklist warns about production pods picking up test values
(jest.setup.js defaults) and about missing variables. Kubernetes only finds
a missing Secret key when a pod fails to start, which during a canary is
already too late for the replicas it replaced. This gate reads the template
before anything starts:
- every Secret and ConfigMap (and key) it references exists, unless the
  reference is marked optional;
- every required variable is defined in the release's container;
- no value, literal or resolved from a Secret or ConfigMap, matches a
  forbidden pattern.
Values are never copied into status or events: only names and patterns are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.gates.checks import ENVIRONMENT, GateCheck, failed, passed

Kind = Literal["Secret", "ConfigMap"]
ObjectKey = tuple[Kind, str]
#: (kind, name) -> the object's data, or None if it does not exist.
Objects = Mapping[ObjectKey, Mapping[str, str] | None]


@dataclass(frozen=True)
class Reference:
    kind: Kind
    name: str
    key: str | None  # None: the whole object (envFrom, a volume without items)
    optional: bool
    used_by: str


@dataclass(frozen=True)
class Forbidden:
    pattern: str
    variables: tuple[str, ...] = ()
    reason: str | None = None


_KEY_REFS: tuple[tuple[str, Kind], ...] = (
    ("secretKeyRef", "Secret"),
    ("configMapKeyRef", "ConfigMap"),
)
_OBJECT_REFS: tuple[tuple[str, Kind], ...] = (
    ("secretRef", "Secret"),
    ("configMapRef", "ConfigMap"),
)


def _containers(template: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = template.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _sources(
    holder: Mapping[str, Any], fields: tuple[tuple[str, Kind], ...]
) -> Iterator[tuple[Kind, Mapping[str, Any]]]:
    for field, kind in fields:
        ref = holder.get(field)
        if ref:
            yield kind, ref


def _env_refs(container: Mapping[str, Any]) -> Iterator[Reference]:
    cname = container.get("name", "?")
    for env in container.get("env") or []:
        for kind, ref in _sources(env.get("valueFrom") or {}, _KEY_REFS):
            where = f"container {cname} env {env.get('name')}"
            yield Reference(
                kind, ref.get("name", ""), ref.get("key"), bool(ref.get("optional")), where
            )
    for env_from in container.get("envFrom") or []:
        for kind, ref in _sources(env_from, _OBJECT_REFS):
            where = f"container {cname} envFrom"
            yield Reference(kind, ref.get("name", ""), None, bool(ref.get("optional")), where)


def _volume_sources(volume: Mapping[str, Any]) -> Iterator[tuple[Kind, str, Mapping[str, Any]]]:
    if volume.get("secret"):
        yield "Secret", volume["secret"].get("secretName", ""), volume["secret"]
    if volume.get("configMap"):
        yield "ConfigMap", volume["configMap"].get("name", ""), volume["configMap"]
    for projected in (volume.get("projected") or {}).get("sources") or []:
        for kind, source in _sources(projected, (("secret", "Secret"), ("configMap", "ConfigMap"))):
            yield kind, source.get("name", ""), source


def _volume_refs(template: Mapping[str, Any]) -> Iterator[Reference]:
    for volume in (template.get("spec") or {}).get("volumes") or []:
        where = f"volume {volume.get('name', '?')}"
        for kind, name, source in _volume_sources(volume):
            optional = bool(source.get("optional"))
            keys = [item.get("key") for item in source.get("items") or []] or [None]
            for key in keys:
                yield Reference(kind, name, key, optional, where)


def references(template: Mapping[str, Any]) -> list[Reference]:
    """Every Secret and ConfigMap the pod template reads, from env, envFrom and volumes."""
    refs: list[Reference] = []
    for container in _containers(template):
        refs.extend(_env_refs(container))
    refs.extend(_volume_refs(template))
    return refs


def objects_needed(template: Mapping[str, Any]) -> list[ObjectKey]:
    return sorted({(r.kind, r.name) for r in references(template)})


def _variables(
    container: Mapping[str, Any], objects: Objects
) -> Iterator[tuple[str, str | None, str]]:
    """(name, value or None if unknown, where it comes from) for each variable of a container."""
    for env_from in container.get("envFrom") or []:
        prefix = env_from.get("prefix") or ""
        for kind, ref in _sources(env_from, _OBJECT_REFS):
            name = ref.get("name", "")
            for key, value in (objects.get((kind, name)) or {}).items():
                yield prefix + key, value, f"{kind} {name}"
    for env in container.get("env") or []:
        name = env.get("name", "")
        source = env.get("valueFrom")
        if not source:
            yield name, str(env.get("value") or ""), "literal value"
            continue
        refs = list(_sources(source, _KEY_REFS))
        if not refs:
            yield name, None, "fieldRef/resourceFieldRef"
            continue
        kind, ref = refs[0]
        data = objects.get((kind, ref.get("name", ""))) or {}
        yield name, data.get(ref.get("key", "")), f"{kind} {ref.get('name')} key {ref.get('key')}"


def _missing(refs: Sequence[Reference], objects: Objects) -> list[str]:
    problems = []
    for ref in refs:
        if ref.optional:
            continue
        data = objects.get((ref.kind, ref.name))
        if data is None:
            problems.append(f"{ref.kind} {ref.name} not found ({ref.used_by})")
        elif ref.key is not None and ref.key not in data:
            problems.append(f"{ref.kind} {ref.name} has no key {ref.key} ({ref.used_by})")
    return list(dict.fromkeys(problems))


def judge_environment(
    template: Mapping[str, Any],
    container: str | None,
    required: Sequence[str],
    forbidden: Sequence[Forbidden],
    objects: Objects,
) -> GateCheck:
    refs = references(template)
    problems = _missing(refs, objects)
    containers = (template.get("spec") or {}).get("containers") or []
    chosen = next((c for c in containers if container in (None, c.get("name"))), None)
    if chosen is None:
        problems.append(f"container {container} not found in the pod template")
    else:
        defined = {name for name, _, _ in _variables(chosen, objects)}
        problems += [
            f"required variable {name} is not defined in container {chosen.get('name')}"
            for name in required
            if name not in defined
        ]
    for c in _containers(template):
        for name, value, origin in _variables(c, objects):
            for rule in forbidden:
                if value is None or (rule.variables and name not in rule.variables):
                    continue
                if re.search(rule.pattern, value):
                    why = f" ({rule.reason})" if rule.reason else ""
                    problems.append(
                        f"variable {name} in container {c.get('name')} ({origin}) matches "
                        f"forbidden pattern {rule.pattern!r}{why}"
                    )
    if problems:
        reason = "ReferenceMissing" if _missing(refs, objects) else "EnvironmentInvalid"
        return failed(ENVIRONMENT, reason, f"{len(problems)} problem(s): {problems[0]}", problems)
    return passed(
        ENVIRONMENT,
        f"{len(refs)} reference(s) resolve, {len(required)} required variable(s) defined, "
        "no forbidden values",
    )
