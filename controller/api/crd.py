"""Generate the CustomResourceDefinition from the pydantic models.

Kubernetes wants a *structural* OpenAPI v3 schema: no $ref, no anyOf for
nullability, no `additionalProperties: false`, and OpenAPI 3.0's boolean
exclusiveMinimum. This module rewrites pydantic's JSON Schema into that form,
so the models stay the single source of truth. `python -m controller.api.crd
--write` refreshes the checked-in copies; a test fails when they drift.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys
from typing import Any

import yaml

from controller.api.spec import GROUP, KIND, PLURAL, VERSION, CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_PATHS = (
    REPO / "manifests" / "crds" / "canaryreleases.yaml",
    REPO / "helm" / "canary-controller" / "crds" / "canaryreleases.yaml",
)
_DROP = {"title"}

Schema = dict[str, Any]


def _structural(node: Any, defs: dict[str, Schema]) -> Any:
    """Inline references and rewrite JSON Schema idioms into structural OpenAPI."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _structural({**target, **extra}, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) != 1:
            raise ValueError(f"cannot express union in a structural schema: {node}")
        if rest.get("default", 0) is None:
            del rest["default"]
        # The controller never writes nulls (it omits unset fields), so an
        # optional field is simply one that is not required.
        return _structural({**options[0], **rest}, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs" or (key == "additionalProperties" and value is False):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "examples":  # JSON Schema's list; OpenAPI v3.0 has a single example
            out["example"] = value[0]
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _structural(value, defs)
    return out


def _schema_of(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    result: Schema = _structural(raw, raw.get("$defs", {}))
    return result


def build_crd() -> dict[str, Any]:
    """The CRD as a plain dict, ready for YAML or the apiextensions API."""
    spec_schema = _schema_of(CanaryReleaseSpec)
    status_schema = _schema_of(CanaryReleaseStatus)
    column = {"jsonPath": ".status.{}", "type": "string"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["crel"],
                "categories": ["all", "canary"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {**column, "name": "Phase", "jsonPath": ".status.phase"},
                        {**column, "name": "Stable", "jsonPath": ".status.stableTag"},
                        {**column, "name": "Canary", "jsonPath": ".status.canaryTag"},
                        {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
                        {"name": "Step", "type": "integer", "jsonPath": ".status.currentStepIndex"},
                        {
                            "name": "Traffic",
                            "type": "integer",
                            "jsonPath": ".status.traffic.weight",
                            "description": "the weight the traffic router applies now",
                            "priority": 1,
                        },
                        {**column, "name": "Reason", "jsonPath": ".status.reason", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A canary release of one Deployment.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated from controller/api by `make crds`. Do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="refresh the checked-in CRDs")
    args = parser.parse_args(argv)
    text = render_crd()
    if not args.write:
        sys.stdout.write(text)
        return 0
    for path in CRD_PATHS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
