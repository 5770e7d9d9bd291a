"""Every shipped example is a valid CanaryRelease, and its Secret references resolve."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from controller.api.spec import GROUP, KIND, CanaryReleaseSpec

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def _documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_there_are_examples() -> None:
    assert {p.name for p in FILES} >= {
        "checklist-release.yaml",
        "audit-log-sql.yaml",
        "audit-log-prometheus.yaml",
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_validates_against_the_models(path: pathlib.Path) -> None:
    docs = _documents(path)
    releases = [d for d in docs if d["kind"] == KIND]
    assert releases, f"{path.name} has no {KIND}"
    secrets = {
        (d["metadata"]["name"], key)
        for d in docs
        if d["kind"] == "Secret"
        for key in {**d.get("stringData", {}), **d.get("data", {})}
    }
    for doc in releases:
        assert doc["apiVersion"].startswith(f"{GROUP}/")
        spec = CanaryReleaseSpec.model_validate(doc["spec"])
        audit = spec.analysis.audit_log if spec.analysis else None
        if audit is not None and audit.sql is not None:
            ref = audit.sql.secret_ref
            assert (ref.name, ref.key) in secrets, f"{path.name}: Secret {ref.name}/{ref.key}"


def test_the_checklist_example_covers_the_seeds_list() -> None:
    [release] = [d for d in _documents(EXAMPLES / "checklist-release.yaml") if d["kind"] == KIND]
    spec = CanaryReleaseSpec.model_validate(release["spec"])
    assert spec.analysis is not None and spec.post_promotion is not None
    names = {m.name for m in spec.analysis.metrics}
    assert names == {"error-rate", "type-errors", "db-pool-usage", "api-latency-p99"}
    assert spec.analysis.audit_log is not None and spec.analysis.audit_log.sql is not None
    assert spec.analysis.audit_log.sql.table == "audit_logs"
    assert {m.name for m in spec.post_promotion.metrics} == names
    type_errors = next(m for m in spec.analysis.metrics if m.name == "type-errors")
    assert type_errors.errors is not None and 'type="TypeError"' in type_errors.errors
