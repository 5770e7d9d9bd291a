"""The `{{name}}` placeholders of PromQL in a spec, read one way everywhere.

The controller fills them, `canaryctl lint` checks them and the models ask
whether a query carries the track: if these read them differently (one allows
`{{ track }}`, another `{{  track}}`), lint passes a query that Prometheus then
rejects, or an audit query is compared on the wrong baseline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: What the controller fills in every PromQL text of a spec.
PROMQL_PLACEHOLDERS = frozenset({"track", "namespace", "name", "target", "window", "interval"})


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def fill(text: str, values: Mapping[str, str]) -> str:
    """Every known placeholder replaced; an unknown one is left for the reader to see."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
