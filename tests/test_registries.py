"""Registries in the ``config -> create -> name`` style: world-model backends and cohort sources."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from sepsis_sdk.errors import CohortValidationError, ModelError, UserError
from sepsis_sdk.sources import load, register_source, source_names
from sepsis_sdk.world_model import (
    FakeWorldModel,
    backend_names,
    get_backend,
    load_world_model,
    make_config,
    register_backend,
    train_world_model,
)

ROOT = Path(__file__).resolve().parents[1]


class ToyConfig(BaseModel):
    noise: float = 0.0
    window: int = 2


@register_backend("toy", description="a toy backend registered from outside the SDK")
class ToyWorldModel(FakeWorldModel):
    """One class and one register call: everything a new backend needs."""

    backend = "toy"
    config_class = ToyConfig

    @classmethod
    def fit(cls, cohort, config=None, *, progress=None):
        cfg = config or ToyConfig()
        model = cls(cohort.schema, noise=cfg.noise, window=cfg.window)
        model.config = cfg
        if progress is not None:
            progress(1, 1, {})
        return model

    def save(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {
            "backend": self.backend,
            "config": self.config.model_dump(),
            "schema": self.schema.model_dump(),
        }
        (path / "config.json").write_text(json.dumps(cfg))
        return path

    @classmethod
    def load(cls, path):
        from sepsis_sdk.features import FeatureSchema

        raw = json.loads((Path(path) / "config.json").read_text())
        cfg = ToyConfig(**raw["config"])
        model = cls(FeatureSchema.model_validate(raw["schema"]), noise=cfg.noise, window=cfg.window)
        model.config = cfg
        return model


@pytest.fixture(scope="module")
def cohort():
    return load("icu-sepsis", episodes=30, seed=0)


def test_a_backend_is_one_class_and_one_register_call(cohort, tmp_path):
    assert {"torch", "xgboost", "neighbour", "toy"} <= set(backend_names())
    seen = []
    wm = train_world_model(cohort, "toy", noise=0.5, progress=lambda *a: seen.append(a), device="cpu")
    assert isinstance(wm, ToyWorldModel) and wm.config == ToyConfig(noise=0.5) and seen == [(1, 1, {})]
    wm.save(tmp_path / "m")
    back = load_world_model(tmp_path / "m", device="cpu")  # the name comes from config.json
    assert isinstance(back, ToyWorldModel) and back.config == wm.config
    # config -> create: a settings object names its backend
    assert isinstance(train_world_model(cohort, ToyConfig(window=3)), ToyWorldModel)
    assert make_config("toy", window=5) == ToyConfig(window=5)


def test_backend_errors(cohort, tmp_path):
    with pytest.raises(UserError, match="unknown world-model backend 'nope'"):
        train_world_model(cohort, "nope")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text(json.dumps({"backend": "gone"}))
    with pytest.raises(ModelError, match="unknown backend 'gone'"):
        load_world_model(tmp_path / "x")
    with pytest.raises(UserError, match="registered as"):
        register_backend("other-name")(ToyWorldModel)


def test_builtin_backends_record_their_name():
    from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel

    assert get_backend("xgboost") is XGBoostWorldModel and XGBoostWorldModel.config_class is XGBoostConfig


def test_listing_backends_and_sources_stays_light():
    code = (
        "import sys; from sepsis_sdk.world_model import backend_names; backend_names();"
        "from sepsis_sdk.sources import source_names; source_names();"
        "assert not {'torch', 'xgboost', 'sepsis_sdk.cli'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_load_for_every_cohort_spec(cohort, tmp_path):
    assert {"icu-sepsis", "synthetic"} <= set(source_names())
    assert cohort.source == "icu-sepsis" and cohort.n_patients == 30
    assert load(cohort) is cohort
    syn = load("synthetic", episodes=12, seed=1)
    assert syn.synthetic and syn.n_patients == 12
    f = cohort.to_parquet(tmp_path / "c.parquet")
    assert load(f, episodes=999, seed=5).data.equals(cohort.data)  # a file is read as it is
    from sepsis_sdk.sources.mimic import write_mimic_iv

    csv = write_mimic_iv(syn, tmp_path / "m.csv")
    assert load(str(csv)).n_patients == 12
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CohortValidationError, match="unrecognised"):
        load(tmp_path / "junk.csv")
    with pytest.raises(UserError, match="unknown cohort source 'nope'"):
        load("nope")


def test_register_a_source(cohort):
    @register_source("tiny-ward", description="the first patients of a sampled cohort")
    def _tiny(*, episodes=3, seed=0):
        return cohort.head(episodes)

    assert load("tiny-ward", episodes=2).n_patients == 2


def test_training_does_not_import_the_cli():
    for f in (ROOT / "training").rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.ImportFrom):
                assert not (n.module or "").startswith("sepsis_sdk.cli"), f"{f.name} imports {n.module}"
