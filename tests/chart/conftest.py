"""Fixtures of the chart suite: every test renders through Helm v4's library (chartlib)."""

from __future__ import annotations

import functools
import os

import pytest

import chartlib

# One value set per file in values/: the matrix every render-level test runs over.
CASES = sorted(p.stem for p in chartlib.VALUES_DIR.glob("*.yaml"))


def in_ci() -> bool:
    """CI sets CI=true: there a missing tool is a failure, not a skip."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chart_meta() -> dict:
    return chartlib.chart().metadata


@functools.lru_cache(maxsize=None)
def render_case(case: str) -> chartlib.Rendered:
    """The render of values/<case>.yaml (cached: tests only read it)."""
    values = chartlib.load_values(case)
    return chartlib.Rendered(chartlib.render(values, name=release_for(case)))


def release_for(case: str) -> str:
    # "everything" also proves names follow the release name and nameOverride.
    return "platform" if case == "everything" else chartlib.RELEASE
