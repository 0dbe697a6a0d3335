"""Constrained JSON decoding: the SDK's JsonPrefix processor vs lm-format-enforcer, same model, one run.

Issue 11 asked to measure the hand-written JSON-schema constraint against one library on the same model
and keep the faster. lm-format-enforcer (pure Python) is the one that installs on CPU here; xgrammar's
wheel needs ``tvm_ffi``. lm-format-enforcer 0.11.3 imports ``PreTrainedTokenizerBase`` from
``transformers.tokenization_utils``, which transformers 5 moved: the run patched that one import line in
a private copy (``pip install --target DIR --no-deps lm-format-enforcer interegular``, then
``PYTHONPATH=DIR``). Greedy decoding of a ``Prescription`` for 5 ICU-Sepsis patients with SmolLM2-135M,
each method in turn per prompt (interleaved, so machine load hits all alike), after one warm-up call each.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/bench_json_constraint.py
"""

import json
import time

import torch

from sepsis_sdk.graphs import Prescription
from sepsis_sdk.llm._local import GenRequest, load_local_model
from sepsis_sdk.render import infer_schema, render_history
from sepsis_sdk.sources.icu_sepsis import sample_cohort

MAX_NEW = 96


def prompts_for(local, schema, n=5):
    cohort = sample_cohort(n + 1, seed=0)
    out = []
    for pid in cohort.patient_ids[:n]:
        h = cohort.episode(str(pid)).history(0)
        system = "You are an ICU sepsis agent. Reply with only a JSON object that matches this JSON schema:\n"
        msgs = [
            {"role": "system", "content": system + json.dumps(schema)},
            {"role": "user", "content": render_history(h, infer_schema(h), 2)[:1500]
             + "\nRecommend fluid and vasopressor levels (0-4)."},
        ]  # fmt: skip
        out.append(local.render(msgs))
    return out


def main():
    from lmformatenforcer import JsonSchemaParser
    from lmformatenforcer.integrations.transformers import (
        build_token_enforcer_tokenizer_data,
        build_transformers_prefix_allowed_tokens_fn,
    )

    torch.set_num_threads(2)
    local = load_local_model("smollm2")
    schema = Prescription.model_json_schema()
    prompts = prompts_for(local, schema)
    t0 = time.perf_counter()
    tok_data = build_token_enforcer_tokenizer_data(local.tokenizer)
    setup = time.perf_counter() - t0

    def ours(p):
        (r,) = local.generate([GenRequest(p, max_new_tokens=MAX_NEW, schema=schema, constrained=True)])
        return r.text, r.completion_tokens

    def lmfe(p):
        fn = build_transformers_prefix_allowed_tokens_fn(tok_data, JsonSchemaParser(schema))
        enc = local.tokenizer([p], return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = local.model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, prefix_allowed_tokens_fn=fn,
                                       pad_token_id=local.tokenizer.pad_token_id, eos_token_id=local.eos_id)  # fmt: skip
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        if local.eos_id in new:
            new = new[: new.index(local.eos_id)]
        return local.tokenizer.decode(new, skip_special_tokens=True), len(new)

    def plain(p):
        (r,) = local.generate([GenRequest(p, max_new_tokens=MAX_NEW)])
        return r.text, r.completion_tokens

    methods = {"ours": ours, "lmfe": lmfe, "unconstrained": plain}
    res = {name: [] for name in methods}
    for f in methods.values():
        f(prompts[0])  # warm up
    for p in prompts:
        for name, f in methods.items():  # interleaved: machine load hits every method alike
            t0 = time.perf_counter()
            text, n = f(p)
            dt = time.perf_counter() - t0
            try:
                Prescription.model_validate_json(text)
                ok = True
            except ValueError:
                ok = False
            res[name].append((dt, n, ok, text[:80]))
    print("lmfe tokenizer setup s", round(setup, 2))
    for name, rows in res.items():
        mean = sum(r[0] for r in rows) / len(rows)
        valid = sum(r[2] for r in rows)
        print(name, f"mean s {mean:.2f}", "tokens", [r[1] for r in rows], "valid", valid, "/", len(rows))
        print("   ", rows[0][3])


if __name__ == "__main__":
    main()
