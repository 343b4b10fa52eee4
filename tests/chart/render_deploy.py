"""Regenerates the plain manifests under deploy/ from the Helm chart (default values plus the
placeholders in chartlib.DEPLOY_VALUES):

    target/ci-venv/bin/python tests/chart/render_deploy.py          # write the files below
    target/ci-venv/bin/python tests/chart/render_deploy.py --check  # exit 1 when deploy/ drifted

It writes deploy/base/*.yaml (the kustomize base), deploy/kustomization.yaml and
deploy/install.yaml (one file for `kubectl apply -f`). Nothing else is touched: deploy/README.md, deploy/overlays/, deploy/argocd/ and
deploy/flux/ are written by hand."""

from __future__ import annotations

import argparse
import difflib
import sys

import chartlib


def drift() -> list[str]:
    """One unified diff per generated file that differs from what this script would write."""
    diffs = []
    for name, wanted in chartlib.deploy_files().items():
        path = chartlib.DEPLOY_DIR / name
        have = path.read_text(encoding="utf-8") if path.exists() else ""
        if have != wanted:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        have.splitlines(keepends=True),
                        wanted.splitlines(keepends=True),
                        f"deploy/{name} (committed)",
                        f"deploy/{name} (rendered from the chart)",
                    )
                )
            )
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if args.check:
        diffs = drift()
        for d in diffs:
            sys.stdout.write(d)
        if diffs:
            print("deploy/ drifted from the chart: run target/ci-venv/bin/python tests/chart/render_deploy.py")
            return 1
        return 0
    for name, content in chartlib.deploy_files().items():
        path = chartlib.DEPLOY_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote deploy/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
