"""Renders charts/hookway with Helm's real engine (helm-python-sdk binds Helm's Go SDK).

As a module: `render(values)` returns the rendered objects (test_chart.py). As a script:
`render.py [VALUES_JSON]` prints them as one multi-document YAML stream, for the tests that install
the chart on a real API server (tests/src/real_api/chart.rs)."""

import copy
import functools
import json
import pathlib
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "hookway"
NAMESPACE = "hookway-system"


def render(values, namespace=NAMESPACE):
    """The chart's objects for `values`: rendered once per distinct (values, namespace), a fresh
    copy per call (the chart tests render the same few value sets many times)."""
    return copy.deepcopy(_render(json.dumps(values, sort_keys=True), namespace))


@functools.lru_cache(maxsize=None)
def _render(values_json, namespace):
    chart = helm.Chart.load(CHART)
    values = json.loads(values_json)
    out = chart.render(values, name="hookway", namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith(".txt"):
            continue
        objects.extend(d for d in yaml.safe_load_all(text) if d)
    return objects


if __name__ == "__main__":
    values = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    yaml.safe_dump_all(render(values), sys.stdout, sort_keys=False)
