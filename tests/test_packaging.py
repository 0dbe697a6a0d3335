"""The install layout, the curated public surface and the light import."""

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"tools", "graphs", "training", "microbench"}


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in {".venv", "tests", "build", "examples", "benchmarks", "docs"} or "egg-info" in str(
            rel
        ):
            continue
        parts = list(rel.parts)
        if parts[0] in MAPPED:
            parts = ["sepsis_sdk", *parts]
        found.add(".".join(parts))
    assert found == listed, f"unlisted: {found - listed}, stale: {listed - found}"


def test_mapped_folders_live_inside_the_namespace():
    mapping = pyproject()["tool"]["setuptools"]["package-dir"]
    assert {k: v for k, v in mapping.items() if k != "sepsis_sdk"} == {f"sepsis_sdk.{m}": m for m in MAPPED}
    import sepsis_sdk.graphs
    import sepsis_sdk.microbench
    import sepsis_sdk.tools
    import sepsis_sdk.training

    assert sepsis_sdk.tools.__name__ == "sepsis_sdk.tools"


@pytest.mark.parametrize("name", sorted(MAPPED))
def test_mapped_folder_refuses_a_second_name(name):
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {name}"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0 and f"sepsis_sdk.{name}" in res.stderr


def test_import_is_light_and_public_surface_is_curated():
    code = (
        "import sys, sepsis_sdk; heavy = [m for m in ('torch','transformers','peft','litellm','d3rlpy','langgraph',"
        "'av','xgboost','pandas','sklearn','matplotlib','instructor') if m in sys.modules]; print(heavy)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
    import sepsis_sdk

    assert sepsis_sdk.__all__ == sorted(sepsis_sdk.__all__)
    for name in sepsis_sdk.__all__:
        assert getattr(sepsis_sdk, name) is not None, name
    assert sepsis_sdk.__version__
    with pytest.raises(AttributeError):
        sepsis_sdk.does_not_exist  # noqa: B018
    assert (ROOT / "sepsis_sdk" / "py.typed").exists()


def test_errors_form_one_tree():
    from sepsis_sdk import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.SepsisSDKError)
    err = errors.CohortValidationError("bad", source="f.csv", column="HR", rows=list(range(25)))
    assert "f.csv" in str(err) and "'HR'" in str(err) and "15 more" in str(err)
    assert "pip install 'sepsis-sdk[torch]'" in str(errors.MissingDependencyError("torch", "torch"))
