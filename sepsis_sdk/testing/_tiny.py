"""A tiny random-init causal LM with a character-level tokenizer, saved to a folder (for fast tests)."""

from __future__ import annotations

import os
import string
from pathlib import Path

from sepsis_sdk._lazy import require

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# A few multi-character tokens so decoding exercises tokens that span several JSON characters.
_MERGES = [("{", '"'), ('"', ":"), (",", " "), ('"', ","), ("t", "r"), ("tr", "u"), ("tru", "e")]


def tiny_causal_lm(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
) -> Path:
    """Save a random-init ``LlamaForCausalLM`` (about 30k parameters) and its tokenizer to ``path``.

    The tokenizer has one token per printable ASCII character plus a few merges, ``<pad>``/``<eos>``/
    ``<unk>`` and a minimal chat template, so ``LiteLLMChat(f"local/{path}")`` works with it. Its replies
    are noise, which is what a constrained-decoding test wants: any valid JSON it produces is the
    constraint's doing.

    Args:
        path: the folder to write (created).
        seed: torch seed for the weights.
        hidden_size: model width.
        layers: decoder layers.
        heads: attention heads.

    Returns:
        The folder.
    """
    torch = require("torch", "local", "the tiny test model")
    transformers = require("transformers", "local", "the tiny test model")
    tokenizers = require("tokenizers", "local", "the tiny test model")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    vocab: dict[str, int] = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for a, b in _MERGES:
        vocab.setdefault(a + b, len(vocab))
    model = tokenizers.models.BPE(vocab=vocab, merges=list(_MERGES), unk_token="<unk>")
    tok = tokenizers.Tokenizer(model)
    tok.decoder = tokenizers.decoders.Fuse()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    return out
