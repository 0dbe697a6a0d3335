"""Backend-specific behaviour: save/load, determinism, device choice, the fake's effects, the Gym env."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.errors import ModelError, UserError
from sepsis_sdk.world_model import FakeWorldModel, WorldModelEnv, load_world_model


@pytest.fixture(scope="module")
def cohort():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(200, seed=1)


@pytest.fixture(scope="module")
def histories(cohort):
    return list(cohort.head(10).histories())


def _torch_cfg(**kw):
    from sepsis_sdk.world_model.torch_backend import TorchConfig

    return TorchConfig(n_members=2, hidden=24, gru_hidden=16, epochs=2, window=3, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "gru"])
def test_torch_deterministic_on_cpu_and_reload_identical(cohort, histories, tmp_path, arch):
    import torch

    from sepsis_sdk.world_model.torch_backend import TorchWorldModel

    torch.set_num_threads(1)
    a = TorchWorldModel.fit(cohort, _torch_cfg(arch=arch), device="cpu")
    b = TorchWorldModel.fit(cohort, _torch_cfg(arch=arch), device="cpu")
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    acts = np.arange(len(histories)) % 25
    pa = a.predict(histories, acts)
    a.save(tmp_path / "m")
    c = load_world_model(tmp_path / "m")
    assert type(c) is TorchWorldModel and c.schema == a.schema and c.config == a.config
    pc = c.predict(histories, acts)
    for f in ("mean", "std", "epistemic_std", "lower", "upper", "p_death", "p_discharge", "support"):
        np.testing.assert_array_equal(getattr(pa, f), getattr(pc, f))
    ra = a.rollout(histories, [[1, 2, 3]], n_samples=3, seed=5)
    rc = c.rollout(histories, [[1, 2, 3]], n_samples=3, seed=5)
    np.testing.assert_array_equal(ra.states, rc.states)
    # a different seed gives a different model
    d = TorchWorldModel.fit(cohort, _torch_cfg(arch=arch, seed=1), device="cpu")
    assert not np.allclose(d.predict(histories, acts).mean, pa.mean)


@pytest.mark.slow
def test_xgboost_reload_identical(cohort, histories, tmp_path):
    from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel

    a = XGBoostWorldModel.fit(cohort, XGBoostConfig(n_members=2, n_estimators=10, n_jobs=1))
    a.save(tmp_path / "x")
    b = load_world_model(tmp_path / "x")
    assert type(b) is XGBoostWorldModel
    acts = np.arange(len(histories)) % 25
    pa, pb = a.predict(histories, acts), b.predict(histories, acts)
    for f in ("mean", "std", "lower", "upper", "p_death", "support"):
        np.testing.assert_array_equal(getattr(pa, f), getattr(pb, f))


def test_cuda_chosen_only_when_available(monkeypatch):
    import torch

    from sepsis_sdk.world_model import torch_backend as tb

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert tb._resolve_device(None) == "cpu"
    assert tb._resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match="no CUDA"):
        tb._resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tb._resolve_device(None) == "cuda"
    assert tb._resolve_device("cpu") == "cpu"


def test_load_rejects_non_models(tmp_path):
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_world_model(tmp_path)
    (tmp_path / "config.json").write_text('{"backend": "nope"}')
    with pytest.raises(ModelError, match="unknown backend"):
        load_world_model(tmp_path)


def test_fake_effects_are_exact_and_deterministic(histories):
    from sepsis_sdk.sources.icu_sepsis import icu_sepsis_schema

    schema = icu_sepsis_schema()
    wm = FakeWorldModel(
        schema,
        effects={"MeanBP": (0.05, 0.1), "Arterial_lactate": (-0.02, 0.0)},
        p_death=0.0,
        p_discharge=0.0,
    )
    j_map, j_lac = schema.index("MeanBP"), schema.index("Arterial_lactate")
    cur = np.array([h.current.values for h in histories])
    action = 5 * 3 + 2  # fluid 3, vaso 2
    p = wm.predict(histories, action)
    lo, hi = (np.asarray(v) for v in schema.bounds())
    np.testing.assert_allclose(
        p.mean[:, j_map], np.clip(cur[:, j_map] + 0.15 + 0.2, lo[j_map], hi[j_map]), atol=1e-6
    )
    np.testing.assert_allclose(
        p.mean[:, j_lac], np.clip(cur[:, j_lac] - 0.06, lo[j_lac], hi[j_lac]), atol=1e-6
    )
    assert (p.std == 0).all()
    r = wm.rollout(histories, [[action] * 3], n_samples=2, seed=0)
    assert r.alive.all() and (r.p_death == 0).all()
    np.testing.assert_array_equal(r.states[:, :, 0], r.states[:, :, 1])  # no noise -> samples agree
    np.testing.assert_allclose(
        r.states[:, 0, 0, 2, j_map], np.clip(cur[:, j_map] + 3 * 0.35, lo[j_map], hi[j_map]), atol=1e-5
    )


def test_fake_hazards_and_support_callables(histories):
    wm = FakeWorldModel(
        p_death=0.0,
        p_discharge=0.0,
        hazard=lambda s, a: (np.where(a == 0, 1.0, 0.0), np.zeros(len(a))),
        support=lambda s, a: a / 24,
    )
    r = wm.rollout(histories, [[0, 0], [1, 1]], n_samples=3, seed=0)
    assert (r.terminal[:, 0] == 1).all() and (r.terminal[:, 1] == 0).all()
    np.testing.assert_allclose(r.p_death[:, 0], 1.0)
    np.testing.assert_allclose(r.support[:, 1], 1 / 24)
    with pytest.raises(UserError):
        FakeWorldModel(p_death=0.8, p_discharge=0.5)


def test_env_runs_episodes_with_pluggable_reward(cohort):
    from gymnasium.utils.env_checker import check_env

    seen = []

    def reward(prev, nxt, outcome):
        seen.append(outcome)
        return 10.0 if outcome == "survival" else (-10.0 if outcome == "death" else 0.5)

    wm = FakeWorldModel(cohort.schema, noise=0.05, p_death=0.1, p_discharge=0.2)
    env = WorldModelEnv(wm, cohort.head(20), reward=reward, max_steps=50)
    check_env(env, skip_render_check=True)
    outcomes = []
    for ep in range(30):
        obs, _ = env.reset(seed=ep)
        assert env.observation_space.contains(obs)
        for _ in range(60):
            obs, r, term, trunc, info = env.step(ep % 25)
            assert env.observation_space.contains(obs)
            if term or trunc:
                outcomes.append(info["outcome"])
                assert r == {"survival": 10.0, "death": -10.0, None: 0.5}[info["outcome"]]
                break
            assert r == 0.5
    assert {"death", "survival"} <= set(outcomes)
    with pytest.raises(Exception, match="0-24"):
        env.step(25)

    # same seed -> same episode
    def run(seed):
        env.reset(seed=seed)
        return [env.step(7)[0].tolist() for _ in range(3)]

    assert run(123) == run(123)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, sepsis_sdk.world_model as w; w.FakeWorldModel; print('torch' in sys.modules, 'xgboost' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_central_path_has_no_sampling_noise(histories):
    noisy = FakeWorldModel(effects={"MeanBP": (0.0, 0.1)}, noise=0.5, p_death=0.2, p_discharge=0.2)
    quiet = FakeWorldModel(effects={"MeanBP": (0.0, 0.1)}, noise=0.0, p_death=0.2, p_discharge=0.2)
    a = noisy.rollout(histories, [[3, 3, 3]], n_samples=4, seed=0, noise=False)
    b = quiet.rollout(histories, [[3, 3, 3]], n_samples=4, seed=9, noise=False)
    assert a.alive.all() and (a.terminal == 0).all()
    np.testing.assert_allclose(a.states, b.states)
    # hazards are still integrated along the path: 1 - 0.6**3 of patients leave within 3 steps
    np.testing.assert_allclose(a.p_death + a.p_discharge, 1 - 0.6**3)
    s = noisy.rollout(histories, [[3, 3, 3]], n_samples=4, seed=0)
    assert not s.alive.all()


@pytest.mark.slow
def test_xgboost_backend_works_without_torch(tmp_path):
    """The fallback must not import torch: run it in a process where ``import torch`` fails."""
    import subprocess
    import sys

    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed (blocked by the test)')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from sepsis_sdk.sources.icu_sepsis import sample_cohort\n"
        "from sepsis_sdk.world_model import XGBoostConfig, XGBoostWorldModel, load_world_model\n"
        "c = sample_cohort(60, seed=0)\n"
        "wm = XGBoostWorldModel.fit(c, XGBoostConfig(n_members=1, n_estimators=3, n_jobs=1))\n"
        f"wm.save({str(tmp_path / 'x')!r}); wm = load_world_model({str(tmp_path / 'x')!r})\n"
        "r = wm.rollout(list(c.head(3).histories())[:3], [[1, 2]], n_samples=2)\n"
        "from sepsis_sdk.errors import MissingDependencyError\n"
        "try:\n"
        "    from sepsis_sdk.world_model import TorchWorldModel\n"
        "except MissingDependencyError as e:\n"
        "    assert 'sepsis-sdk[torch]' in str(e)\n"
        "print('torch' in sys.modules, r.states.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False (3, 1, 2, 2, 48)"


def test_public_surface_is_curated_and_resolves():
    import sepsis_sdk.world_model as w

    assert w.__all__ == sorted(w.__all__)
    for name in w.__all__:
        assert getattr(w, name) is not None
    with pytest.raises(AttributeError):
        w.NoSuchThing  # noqa: B018
