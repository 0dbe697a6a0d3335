"""A tiny random-init Llama with a small word-level tokenizer, built offline in seconds.

For tests and smoke runs of the training stages and the local provider: it has the structure of a real
chat model (chat template, special tokens, LlamaForCausalLM) with random weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
_SPECIAL = ["<pad>", "<unk>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


def make_tiny_llama(
    out_dir: str | Path, corpus: Iterable[str] = (), *, hidden: int = 64, layers: int = 2, seed: int = 0
) -> Path:
    """Save a tiny LlamaForCausalLM + tokenizer to ``out_dir`` and return it.

    The vocabulary is the words and punctuation of ``corpus`` plus digits and JSON symbols, so JSON
    answers are expressible.
    """
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words: set[str] = set("0123456789{}[]:,.\"'-+%<>=/()") | {
        "fluid",
        "vaso",
        "rationale",
        "decision",
        "commit",
        "revise",
        "candidates",
        "reasoning",
    }
    for text in corpus:
        words.update(re.findall(r"\w+|[^\w\s]", text))
    vocab = {tok: i for i, tok in enumerate(_SPECIAL + sorted(words - set(_SPECIAL)))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"<\|\w+\|>|\w+|[^\w\s]"), behavior="isolated"),
        ]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="<|end|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["<|end|>"],
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    # Wider (tied) embeddings than the default init: after the final RMSNorm the hidden state has a fixed
    # norm, so with std-0.02 embeddings no adapter could make the logits peaked enough to learn anything.
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, 0.3)
    model.save_pretrained(out)
    return out
