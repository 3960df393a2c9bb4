"""Renders charts/hookway with Helm's real engine (helm-python-sdk binds Helm's Go SDK).

As a module: `render(values)` returns the rendered objects (test_chart.py). As a script:
`render.py [VALUES_JSON]` prints them as one multi-document YAML stream, for the tests that install
the chart on a real API server (tests/src/real_api/chart.rs)."""

import json
import pathlib
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "hookway"
NAMESPACE = "hookway-system"


def render(values, namespace=NAMESPACE):
    chart = helm.Chart.load(CHART)
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
