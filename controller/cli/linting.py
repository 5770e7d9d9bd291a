"""`canaryctl lint FILE`: validate CanaryRelease YAML offline, with the controller's own rules.

The pydantic models are the ones the controller and the CRD schema come from,
so a file that lints clean is accepted by both; lint also catches what only
the models know (rising weights, unique metric names, min <= max), which the
apiserver's schema alone would let through. Each problem is reported with the
file, the line and the field path, as a compiler would.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from controller.api.placeholders import PROMQL_PLACEHOLDERS, placeholders
from controller.api.spec import GROUP, KIND, VERSION, CanaryReleaseSpec, Metric

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"
    release: str | None = None

    def text(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity}:{field} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _line_index(node: yaml.Node | None, path: Path_ = ()) -> dict[Path_, int]:
    """Map every key path of a YAML document to its (1-based) line."""
    index: dict[Path_, int] = {}
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            index[child] = key.start_mark.line + 1
            index.update({k: v for k, v in _line_index(value, child).items() if k != child})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, (*path, i)))
    return index


def _line_for(index: dict[Path_, int], path: Path_) -> int | None:
    """The line of the deepest part of `path` that exists in the file."""
    for end in range(len(path), -1, -1):
        if path[:end] in index:
            return index[path[:end]]
    return None


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def lint_text(text: str, file: str) -> list[Problem]:
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return [Problem(file, line, "", f"not valid YAML: {exc}")]
    problems: list[Problem] = []
    found = 0
    for node, doc in zip(nodes, documents, strict=True):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            problems.append(Problem(file, node.start_mark.line + 1, "", "not a YAML mapping"))
            continue
        if doc.get("kind") != KIND:
            continue
        found += 1
        problems += _lint_release(doc, _line_index(node), file)
    if found == 0 and not problems:
        problems.append(Problem(file, None, "", f"no {KIND} found in the file"))
    return problems


def _lint_release(doc: dict[str, Any], index: dict[Path_, int], file: str) -> list[Problem]:
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    release = str(name) if name else None
    problems: list[Problem] = []

    def add(path: Path_, message: str, severity: Literal["error", "warning"] = "error") -> None:
        problems.append(
            Problem(file, _line_for(index, path), _dotted(path), message, severity, release)
        )

    expected = f"{GROUP}/{VERSION}"
    if doc.get("apiVersion") != expected:
        add(("apiVersion",), f"must be {expected}, got {doc.get('apiVersion')!r}")
    if not name:
        add(("metadata", "name"), "a name is required")
    elif not _NAME.match(str(name)) or len(str(name)) > 253:
        add(("metadata", "name"), f"{name!r} is not a valid Kubernetes object name")
    raw_spec = doc.get("spec")
    if not isinstance(raw_spec, dict):
        add(("spec",), "spec is required and must be a mapping")
        return problems
    try:
        spec = CanaryReleaseSpec.model_validate(raw_spec)
    except ValidationError as exc:
        for error in exc.errors():
            path: Path_ = ("spec", *(str(p) if isinstance(p, str) else p for p in error["loc"]))
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field (a typo?)"
            add(path, message)
        return problems
    if spec.analysis is None:
        add(
            ("spec",),
            "no analysis: promotion is judged by pod health alone",
            severity="warning",
        )
    for where, what, query, compared in _promql(spec):
        used = placeholders(query)
        for unknown in sorted(used - PROMQL_PLACEHOLDERS):
            add(where, f"unknown placeholder {{{{{unknown}}}}} in {what}")
        if compared and "track" not in used:
            add(
                where,
                f"{what}: no {{{{track}}}} in the query, so the canary "
                "and stable tracks would measure the same series",
                severity="warning",
            )
    return problems


def _promql(spec: CanaryReleaseSpec) -> list[tuple[Path_, str, str, bool]]:
    """Every PromQL text of a spec: (field path, what it is, the text, canary vs stable?)."""
    found: list[tuple[Path_, str, str, bool]] = []
    analysis = spec.analysis
    if analysis is not None:
        for i, metric in enumerate(analysis.metrics):
            for field, query in _queries(metric):
                path: Path_ = ("spec", "analysis", "metrics", i, *field)
                found.append((path, f"metric {metric.name!r}", query, True))
        audit = analysis.audit_log.prometheus if analysis.audit_log else None
        if audit is not None:  # without {{track}} it is compared with past days: no warning
            path = ("spec", "analysis", "auditLog", "prometheus", "query")
            found.append((path, "the audit-log query", audit.query, False))
    if spec.post_promotion is not None:  # {{track}} is stable's, the only track left
        for i, metric in enumerate(spec.post_promotion.metrics):
            for field, query in _queries(metric):
                path = ("spec", "postPromotion", "metrics", i, *field)
                found.append((path, f"postPromotion metric {metric.name!r}", query, False))
    return found


def _queries(metric: Metric) -> list[tuple[Path_, str]]:
    """Every PromQL text of a metric, with the field path it came from."""
    found: list[tuple[Path_, str]] = [
        ((name,), text)
        for name in ("query", "errors", "requests")
        if isinstance(text := getattr(metric, name, None), str)
    ]
    latency = getattr(metric, "latency", None)
    if latency is not None:
        found.append((("latency", "buckets"), latency.buckets))
    return found


def lint_file(path: Path) -> list[Problem]:
    try:
        text = path.read_text()
    except OSError as exc:
        return [Problem(str(path), None, "", f"cannot read: {exc.strerror or exc}")]
    return lint_text(text, str(path))
