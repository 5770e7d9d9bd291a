"""The checked-in CRDs are generated from the models; drift fails here."""

from __future__ import annotations

import yaml

from controller.api.crd import CRD_PATHS, build_crd, render_crd


def test_checked_in_crds_match_the_models() -> None:
    expected = render_crd()
    for path in CRD_PATHS:
        assert path.read_text() == expected, f"{path} drifted: run `make crds`"


def test_schema_is_structural() -> None:
    """No $ref, anyOf, const, or additionalProperties: false survive the rewrite."""
    text = yaml.safe_dump(build_crd())
    for forbidden in ("$ref", "anyOf", "const:", "additionalProperties: false", "nullable"):
        assert forbidden not in text


def test_printer_columns_and_status_subresource() -> None:
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:5] == ["Phase", "Stable", "Canary", "Weight", "Step"]
    assert "Age" in names
    assert build_crd()["spec"]["names"]["shortNames"] == ["crel"]
