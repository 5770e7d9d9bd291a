"""`canaryctl lint`: offline validation that points at the line, and exits non-zero on errors."""

from __future__ import annotations

import json
import pathlib
import textwrap
from datetime import timedelta

import pytest

from controller.cli.main import main
from controller.engine.queries import render_query

GOOD = textwrap.dedent(
    """\
    apiVersion: canary.dev/v1alpha1
    kind: CanaryRelease
    metadata:
      name: payments
    spec:
      targetRef: {kind: Deployment, name: payments}
      release:
        tag: v2.4.1
        image: registry.example.com/payments:{tag}
      steps:
        - setWeight: 10
        - pause: {duration: 24h}
        - setWeight: 100
      analysis:
        prometheus: {address: http://prometheus.monitoring:9090}
        metrics:
          - name: error-rate
            query: sum(rate(errors{track="{{track}}"}[{{window}}]))
            threshold: {max: 0.01}
            compare: {maxRatio: 1.5}
      notifications:
        - name: team
          type: slack
          urlSecretRef: {name: slack-webhook, key: url}
    """
)


def _lint(tmp_path: pathlib.Path, text: str, *extra: str) -> tuple[int, str]:
    path = tmp_path / "release.yaml"
    path.write_text(text)
    out = _Capture()
    code = main(["lint", str(path), *extra], out=out)
    return code, out.getvalue()


class _Capture:
    """A stdout stand-in that is not a terminal."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)


def test_a_good_file_passes(tmp_path: pathlib.Path) -> None:
    code, out = _lint(tmp_path, GOOD)
    assert code == 0 and out.startswith("ok: ")


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "    - setWeight: 10\n",
            "    - setWeight: 10\n      pause: {duration: 1m}\n",
            11,
            "spec.steps.0: each step must set exactly one of setWeight or pause",
        ),
        (
            "pause: {duration: 24h}",
            "pause: {duration: 24 hours}",
            12,
            "spec.steps.1.pause.duration: String should match pattern",
        ),
        (
            "    - setWeight: 100\n",
            "    - setWeight: 5\n",
            None,
            "setWeight steps must not decrease, got [10, 5]",
        ),
        (
            "threshold: {max: 0.01}",
            "threshold: {max: 0.01, mni: 0}",
            19,
            "spec.analysis.metrics.0.threshold.mni: unknown field (a typo?)",
        ),
        (
            "    tag: v2.4.1\n",
            "    tag: v2.4.1\n    imgae: x\n",
            9,
            "spec.release.imgae: unknown field",
        ),
        (
            "apiVersion: canary.dev/v1alpha1",
            "apiVersion: canary.dev/v1",
            1,
            "must be canary.dev/v1alpha1",
        ),
        ("name: payments\nspec", "name: Payments_1\nspec", 4, "not a valid Kubernetes object name"),
        (
            "      urlSecretRef: {name: slack-webhook, key: url}\n",
            "",
            22,
            "spec.notifications.0.urlSecretRef: Field required",
        ),
    ],
)
def test_errors_name_the_line_and_the_field(
    tmp_path: pathlib.Path, old: str, new: str, line: int | None, message: str
) -> None:
    assert old in GOOD
    code, out = _lint(tmp_path, GOOD.replace(old, new, 1))
    assert code == 1, out
    assert message in out
    if line is not None:
        assert f"release.yaml:{line}: error:" in out, out


def test_a_query_without_track_is_a_warning_and_strict_fails_on_it(tmp_path: pathlib.Path) -> None:
    text = GOOD.replace('{track="{{track}}"}', '{app="payments"}')
    code, out = _lint(tmp_path, text)
    assert code == 0 and "warning" in out and "no {{track}}" in out
    code, _ = _lint(tmp_path, text, "--strict")
    assert code == 1


def test_an_unknown_placeholder_is_an_error(tmp_path: pathlib.Path) -> None:
    code, out = _lint(tmp_path, GOOD.replace("{{window}}", "{{windw}}"))
    assert code == 1 and "unknown placeholder {{windw}}" in out


WATCHED = GOOD.replace(
    "  notifications:\n",
    """  postPromotion:
    duration: 1h
    metrics:
      - name: p99
        query: histogram_quantile(0.99, sum by (le) (rate(h{track="{{track}}"}[{{windw}}])))
        threshold: {max: 0.5}
  notifications:
""",
).replace(
    "    metrics:\n      - name: error-rate",
    """    auditLog:
      prometheus:
        query: sum by (action) (increase(audit_events_total{ns="{{namespce}}"}[{{window}}]))
    metrics:
      - name: error-rate""",
)
assert WATCHED.count("{{windw}}") == WATCHED.count("{{namespce}}") == 1


def test_every_promql_field_is_checked_not_only_the_canary_metrics(tmp_path: pathlib.Path) -> None:
    code, out = _lint(tmp_path, WATCHED)
    assert code == 1, out
    assert "spec.postPromotion.metrics.0.query" in out and "{{windw}}" in out
    assert "spec.analysis.auditLog.prometheus.query" in out and "{{namespce}}" in out
    # neither gets the canary-against-stable warning: those have no second track
    fixed = WATCHED.replace("{{windw}}", "{{window}}").replace("{{namespce}}", "{{namespace}}")
    code, out = _lint(tmp_path, fixed.replace('{track="{{track}}"}', "{}"), "--strict")
    assert code == 1 and out.count("no {{track}}") == 1 and "'error-rate'" in out


def test_a_placeholder_lint_accepts_is_one_the_controller_fills(tmp_path: pathlib.Path) -> None:
    spaced = GOOD.replace("{{track}}", "{{  track}}").replace("{{window}}", "{{window }}")
    code, out = _lint(tmp_path, spaced, "--strict")
    assert code == 0, out
    query = 'sum(rate(errors{track="{{  track}}"}[{{window }}])) + {{ unknown }}'
    rendered = render_query(
        query,
        track="canary",
        namespace="shop",
        name="payments",
        target="payments",
        window=timedelta(minutes=5),
        interval=timedelta(minutes=1),
    )
    assert rendered == 'sum(rate(errors{track="canary"}[300s])) + {{ unknown }}'


def test_broken_yaml_and_missing_release(tmp_path: pathlib.Path) -> None:
    code, out = _lint(tmp_path, "spec: [unclosed\n")
    assert code == 1 and "not valid YAML" in out
    code, out = _lint(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert code == 1 and "no CanaryRelease found" in out


def test_every_document_of_a_multi_document_file_is_checked(tmp_path: pathlib.Path) -> None:
    second = GOOD.replace("name: payments\nspec", "name: orders\nspec").replace(
        "setWeight: 100", "setWeight: 101"
    )
    code, out = _lint(tmp_path, GOOD + "---\n" + second)
    assert code == 1 and out.count("error:") == 1 and ":38: error:" in out


def test_json_output_for_scripts(tmp_path: pathlib.Path) -> None:
    code, out = _lint(tmp_path, GOOD.replace("setWeight: 100", "setWeight: 5"), "-o", "json")
    data = json.loads(out)
    assert code == 1 and data["valid"] is False
    assert data["problems"][0]["release"] == "payments"
    assert data["problems"][0]["severity"] == "error"


def test_a_missing_file_is_an_error(tmp_path: pathlib.Path) -> None:
    out = _Capture()
    assert main(["lint", str(tmp_path / "nope.yaml")], out=out) == 1
    assert "cannot read" in out.getvalue()


def test_the_example_in_the_cli_docs_lints_clean(tmp_path: pathlib.Path) -> None:
    docs = pathlib.Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    block = docs.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    code, out = _lint(tmp_path, block)
    assert code == 0, out
