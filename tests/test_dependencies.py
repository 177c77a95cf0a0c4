"""The declared dependency ranges: compromised releases are excluded, the installed versions are admitted."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def requirement(name: str) -> Requirement:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (found,) = [r for r in map(Requirement, dependencies) if r.name == name]
    return found


def test_compromised_lightning_releases_are_excluded() -> None:
    """lightning 2.6.2 and 2.6.3 were compromised releases (advisory GHSA-w37p-236h-pfx3)."""
    spec = requirement("lightning").specifier
    assert not spec.contains("2.6.2") and not spec.contains("2.6.3")
    assert spec.contains("2.6.1") and spec.contains("2.6.4") and spec.contains("2.5.0")
    assert spec.contains(version("lightning"))
