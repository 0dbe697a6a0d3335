"""Log-likelihood choice among fixed answers (sepsis_sdk.llm.LogLikChooser) and the direct graph's
``decide="loglik"``, on the tiny random local model (fast, offline)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("langgraph")

from sepsis_sdk.actions import Action
from sepsis_sdk.errors import LLMCallError, UserError
from sepsis_sdk.graphs import Guard, build_direct_graph
from sepsis_sdk.graphs import _prompts as P
from sepsis_sdk.graphs._loglik import action_options
from sepsis_sdk.llm import LiteLLMChat, LogLikChooser, as_chooser, score_continuations
from sepsis_sdk.llm._local import GenRequest, load_local_model
from sepsis_sdk.safety import HoldSafePolicy
from sepsis_sdk.testing import FunctionChatModel, tiny_causal_lm
from sepsis_sdk.truth.agent import markov_agent_value, state_histories

MESSAGES = [
    {"role": "system", "content": "You treat sepsis."},
    {"role": "user", "content": "MAP 58 mmHg, lactate 4.1. Choose fluid and vaso."},
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model, shared cores: one thread is fastest
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_causal_lm(tmp_path_factory.mktemp("tiny-choice") / "lm", seed=0)


@pytest.fixture(scope="module")
def local(tiny_path):
    return load_local_model(str(tiny_path))


def slow_loglik(local, prompt: str, option: str) -> float:
    """The reference: one full sequence at a time, no cache, no padding, log-softmax by hand."""
    import torch

    tok = local.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(option, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = local.model(input_ids=torch.tensor([p + c]), use_cache=False).logits[0].double()
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return float(sum(logp[len(p) - 1 + k, t] for k, t in enumerate(c)))


def test_choice_is_the_argmax_of_slow_log_likelihoods(local):
    prompt = local.render(MESSAGES)
    options = action_options()
    slow = [slow_loglik(local, prompt, o) for o in options]
    for method in ("prefix", "batch"):
        c = LogLikChooser(local, method=method).choose(MESSAGES, options)
        assert c.logprobs == pytest.approx(slow, abs=1e-4)
        assert c.index == max(range(len(slow)), key=lambda i: slow[i])
        assert 0 <= c.index < 25 and c.option == options[c.index]
        assert sum(c.probs) == pytest.approx(1.0)
        assert c.usage.prompt_tokens == len(local.tokenizer(prompt, add_special_tokens=False)["input_ids"])


def test_batched_equals_unbatched_with_options_of_different_lengths(local):
    prompt = local.render(MESSAGES)
    options = ["x", '{"fluid": 4, "vaso": 0', "no", '{"fluid": 1', "fluid", "a much longer answer here"]
    batched = score_continuations(local, prompt, options, method="prefix")
    full = score_continuations(local, prompt, options, method="batch")
    one_by_one = [score_continuations(local, prompt, [o], method="prefix")[0] for o in options]
    slow = [slow_loglik(local, prompt, o) for o in options]
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    assert full == pytest.approx(slow, abs=1e-4)
    assert batched == pytest.approx(slow, abs=1e-4)


def test_bad_inputs_are_user_errors(local, tiny_path):
    with pytest.raises(UserError):
        score_continuations(local, "hi", [])
    with pytest.raises(UserError):
        score_continuations(local, "hi", ["a", ""])
    with pytest.raises(UserError):
        score_continuations(local, "hi", ["a"], method="beam")
    with pytest.raises(UserError, match="in-process"):
        LogLikChooser("openai/gpt-4o-mini")
    with pytest.raises(UserError):
        as_chooser(LiteLLMChat("openai/gpt-4o-mini"))
    # A LiteLLMChat on a local model becomes a chooser on the same loaded model.
    assert as_chooser(LiteLLMChat(f"local/{tiny_path}")).local is local


def test_matches_greedy_generation_on_a_model_that_is_certain(tmp_path):
    """Fit a tiny model to one answer until it is certain of it: greedy generation and the choice agree."""
    import torch
    import transformers

    tiny_path = tiny_causal_lm(tmp_path / "lm", seed=0, hidden_size=64)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_path)
    base = load_local_model(str(tiny_path))
    prompt = base.render(MESSAGES)
    target = '{"fluid": 3, "vaso": 1, "rationale": "low MAP"}'
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + c])
    labels = torch.tensor([[-100] * len(p) + c])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(400):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 1e-3:
            break
    model.save_pretrained(tmp_path / "certain")
    tok.save_pretrained(tmp_path / "certain")
    certain = load_local_model(str(tmp_path / "certain"))
    text = certain.generate([GenRequest(prompt=prompt, max_new_tokens=len(c) + 2)])[0].text
    greedy = json.loads(text)
    chosen = LogLikChooser(certain).choose(MESSAGES, action_options())
    assert Action.from_index(chosen.index) == Action(fluid=greedy["fluid"], vaso=greedy["vaso"])
    assert (greedy["fluid"], greedy["vaso"]) == (3, 1)
    assert chosen.probs[chosen.index] > 0.99


def test_direct_graph_loglik_runs_end_to_end_with_the_guard(tiny_path, local):
    chat = LiteLLMChat(f"local/{tiny_path}")
    histories = state_histories(range(6))
    free = build_direct_graph(chat, decide="loglik", guard=Guard(safety=False, fallback=HoldSafePolicy()))
    ruled = build_direct_graph(chat, decide="loglik", fallback=HoldSafePolicy())
    assert free.name == "direct_loglik"
    for h in histories:
        out = free.invoke({"history": h})
        final = out["final"]
        assert 0 <= final["action"] < 25 and final["source"] == "model"
        # The graph's choice is the chooser's on the graph's own prompt (system + direct prompt).
        obs = next(e for e in out["events"] if e.get("type") == "choice")
        assert len(obs["logprobs"]) == 25
        assert final["action"] == max(range(25), key=lambda i: obs["logprobs"][i])
        guarded = ruled.invoke({"history": h})["final"]
        assert 0 <= guarded["action"] < 25 and guarded["source"] in ("model", "guard")
        if guarded["source"] == "model":
            assert guarded["action"] == final["action"]
    r = markov_agent_value(ruled, model=f"local/{tiny_path}", states=range(6), complete_with=HoldSafePolicy(),
                           max_concurrency=2)  # fmt: skip
    assert r.value is not None and set(r.shares) <= {"model", "guard", "fallback"}
    assert ((r.actions[:6] >= 0) & (r.actions[:6] < 25)).all()


def test_loglik_needs_a_local_model_at_build_and_failures_fall_back():
    with pytest.raises(UserError):
        build_direct_graph("openai/gpt-4o-mini", decide="loglik")
    with pytest.raises(UserError):
        build_direct_graph("openai/gpt-4o-mini", decide="sample")

    class Broken(FunctionChatModel):
        def choose(self, messages, options):
            raise LLMCallError("scoring failed", model="fake")

    g = build_direct_graph(
        Broken(lambda m, t: "{}"), decide="loglik", fallback=HoldSafePolicy(), max_retries=0
    )
    final = g.invoke({"history": state_histories([0])[0]})["final"]
    assert final["source"] == "fallback" and 0 <= final["action"] < 25


def test_prompt_is_the_direct_prompt():
    # The loglik graph scores answers to the same question the generating graph asks.
    assert '{"fluid": 0-4, "vaso": 0-4' in P.direct_prompt("obs")
    assert action_options()[Action(fluid=2, vaso=3).index] == '{"fluid": 2, "vaso": 3'


def test_a_shared_prompt_prefix_is_reused_and_gives_the_same_scores(local):
    from sepsis_sdk.llm._choice import forget_prefix, prefix_stats

    options = action_options()
    first = local.render([MESSAGES[0], {"role": "user", "content": "MAP 58 mmHg, lactate 4.1. Decide."}])
    second = local.render([MESSAGES[0], {"role": "user", "content": "MAP 58 mmHg, lactate 1.2. Decide."}])
    other = local.render([{"role": "user", "content": "A different prompt altogether, no shared start."}])
    reused = []
    for prompt in (first, second, other, second):
        before = prefix_stats(local)["reused"]
        got = score_continuations(local, prompt, options)
        reused.append(prefix_stats(local)["reused"] - before)
        assert got == pytest.approx([slow_loglik(local, prompt, o) for o in options], abs=1e-4)
        assert got == pytest.approx(score_continuations(local, prompt, options, reuse_prefix=False), abs=1e-4)
    # The second prompt ran only its own tail; the unrelated one ran whole (and became the new prefix).
    shared = len(local.tokenizer(second[: second.index("1.2")], add_special_tokens=False)["input_ids"])
    assert reused[1] >= shared - 2 and reused[2] == 0
    forget_prefix(local)  # after changing weights in place: nothing stored, the next prompt runs whole
    before = prefix_stats(local)["reused"]
    score_continuations(local, other, options)
    assert prefix_stats(local)["reused"] == before


def test_a_psr_refine_prompt_reuses_its_propose_prompt(local):
    # Propose and refine of one decision share the system prompt and the patient text; the sweep's family
    # prompt shares only the system prompt. The refine prompt starts from the propose prompt's cache (the
    # "last" slot) and still scores exactly as without any reuse.
    from sepsis_sdk.llm._choice import forget_prefix, prefix_stats

    forget_prefix(local)
    sys_msg = {"role": "system", "content": "You treat sepsis. Answer in JSON."}
    patient = "Patient at t=0. MAP 58 mmHg, lactate 4.1 mmol/L, SOFA 9, urine output low, heart rate 121."
    family = local.render([sys_msg, {"role": "user", "content": "Another patient entirely. Decide."}])
    propose = local.render([sys_msg, {"role": "user", "content": P.propose_prompt(patient, 3)}])
    refine = local.render([sys_msg, {"role": "user", "content": P.refine_prompt(patient, "A. sim", "ok", 0)}])
    options = action_options()
    for prompt in (family, propose):
        score_continuations(local, prompt, options)
    before = prefix_stats(local)["reused"]
    got = score_continuations(local, refine, options[:3])
    reused = prefix_stats(local)["reused"] - before
    both = len(
        local.tokenizer(refine[: refine.index(patient) + len(patient)], add_special_tokens=False)["input_ids"]
    )
    assert reused >= both - 2  # system prompt and patient text, not only the system prompt
    assert got == pytest.approx([slow_loglik(local, refine, o) for o in options[:3]], abs=1e-4)
