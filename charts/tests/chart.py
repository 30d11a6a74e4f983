"""Renders charts/sluice with real Helm (the Go SDK, through PyPI's helm-python-sdk).

Used by the chart tests here and, as a command, by the Rust end-to-end tests:

    python3 charts/tests/chart.py --values default|ha|knative|without-knative|tls \
        [--set key=value ...] [--namespace NS] --out FILE

writes the CRDs and every rendered manifest as one multi-document YAML stream, CRDs first (the
order `helm install` applies them in).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sluice"
RELEASE = "sluice"
NAMESPACE = "sluice-system"
# The value sets every test runs on: the defaults, and the files under charts/sluice/ci/.
VALUE_SETS = ["default", "ha", "knative", "without-knative", "tls"]


def values(name: str) -> dict:
    if name == "default":
        return {}
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def render(vals: dict, namespace: str = NAMESPACE, release: str = RELEASE) -> list[dict]:
    """Every manifest of an install, CRDs first; NOTES.txt is not a manifest."""
    docs: list[dict] = []
    with helm.Chart.load(CHART) as chart:
        for crd in chart.crds:
            docs.extend(d for d in yaml.safe_load_all(crd["data"]) if d)
        rendered = chart.render(vals, name=release, namespace=namespace, is_install=True)
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(rendered[path]) if d)
    return docs


def notes(vals: dict, namespace: str = NAMESPACE, release: str = RELEASE) -> str:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(vals, name=release, namespace=namespace, is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="default", choices=VALUE_SETS)
    parser.add_argument("--set", action="append", default=[], help="as helm --set")
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    vals = values(args.values)
    for expression in args.set:
        vals = merge(vals, helm.parse_set_string(expression))
    docs = render(vals, args.namespace)
    pathlib.Path(args.out).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
