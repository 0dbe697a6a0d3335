"""The MIMIC-IV-like path: log-space labs, missingness masks, static features (synthetic cohort)."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.world_model._space import Normaliser


@pytest.fixture(scope="module")
def synthetic():
    try:
        from sepsis_sdk.sources.synthetic import synthesize_cohort
    except ImportError:  # pragma: no cover - the generator lives in another area
        pytest.skip("synthetic cohort generator not available")
    return synthesize_cohort(150, seed=0)


def test_normaliser_log_space_roundtrip(synthetic):
    schema = synthetic.schema
    x, m = synthetic.features(), synthetic.masks()
    nz = Normaliser.fit(schema, x, m & np.isfinite(x), synthetic.static_matrix())
    logged = [f.name for f in schema.features if f.log_model]
    assert {"alt", "ast", "bilirubin_total"} <= set(logged)
    ok = m & np.isfinite(x)
    back = nz.to_stored(nz.to_model(x))
    lo, hi = (np.asarray(b) for b in schema.bounds())
    np.testing.assert_allclose(back[ok], np.clip(x, lo, hi)[ok], rtol=1e-9, atol=1e-9)
    # observed log-modelled labs are roughly standardised in model space
    j = schema.index("alt")
    z = nz.to_model(x)[ok[:, j], j]
    assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1.0, rel=1e-6)
    # the slope of a log feature grows with the value (multiplicative noise), a raw one is constant
    zz = np.zeros((2, len(schema)))
    zz[1] = 2.0
    sl = nz.stored_slope(zz)
    assert sl[1, j] > sl[0, j] > 0
    k = schema.index("heart_rate")
    assert sl[1, k] == pytest.approx(sl[0, k])


@pytest.mark.slow
def test_torch_on_synthetic_respects_bounds_with_masks_and_static(synthetic):
    import torch

    from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel

    torch.set_num_threads(1)
    wm = TorchWorldModel.fit(synthetic, TorchConfig(n_members=2, hidden=32, epochs=2, window=3), device="cpu")
    assert wm.normaliser.static_mean.shape == (len(synthetic.schema.static),)
    hs = [ep.history(min(3, len(ep) - 1)) for ep in synthetic.head(20).episodes()]
    assert any(not all(h.current.observed) for h in hs)  # some values missing
    rng = np.random.default_rng(0)
    r = wm.rollout(hs, rng.integers(0, 25, (20, 50, 6)), n_samples=10, seed=0)  # 10,000 futures
    lo, hi = (np.asarray(b) for b in synthetic.schema.bounds())
    s = r.states
    alive = ~np.isnan(s)
    assert int(((s < lo) & alive).sum() + ((s > hi) & alive).sum()) == 0
    for name in ("alt", "ast", "bilirubin_total", "output_4hourly"):
        j = synthetic.schema.index(name)
        assert np.nanmin(s[..., j]) >= lo[j] >= 0
