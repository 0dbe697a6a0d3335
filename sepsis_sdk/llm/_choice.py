"""Choose among fixed answers by a local causal LM's own log-likelihood (no generation, no parsing).

Given a conversation and N candidate answer strings (the 25 actions written the way the prompt asks for
them), the model scores each candidate as the sum of its tokens' log-probabilities after the prompt, and the
best one is the choice. Two ways to compute the same numbers:

* ``method="prefix"`` (default): the prompt runs once with ``use_cache=True``; its KV cache is repeated
  across a batch and the continuations run in one more forward pass on top of it, one row per distinct
  path (``{"fluid": F, "vaso": `` serves the five options that differ only in V: 5 rows, not 25). The
  prompt pass itself starts from the previous prompt's cache, cropped to the tokens both share (the system
  prompt and the patient header of a sweep). Cost: the prompt's new tokens plus a few dozen.
* ``method="batch"``: the N full sequences (prompt + candidate) in one padded forward pass, no cache. Cost:
  N prompt passes (measured in ``benchmarks/bench_llm_choice.py``; kept as the plain reference).

Prompt and candidate are tokenized separately and concatenated, so the score is defined on token ids
(``log P(candidate ids | prompt ids)``) and both methods, and a one-at-a-time loop, agree to float
rounding. Only in-process models (``local/...``) have log-likelihoods here; a hosted model's chat API does
not return them for arbitrary continuations.

Example:
    >>> from sepsis_sdk.llm import LogLikChooser
    >>> chooser = LogLikChooser("local/smollm2")                                   # doctest: +SKIP
    >>> c = chooser.choose([{"role": "user", "content": "2+2?"}], ["3", "4", "5"])  # doctest: +SKIP
    >>> c.index, c.option, c.probs                                                  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sepsis_sdk.errors import LLMCallError, UserError
from sepsis_sdk.llm._base import Usage

METHODS = ("prefix", "batch")


@dataclass(frozen=True)
class Choice:
    """The outcome of a log-likelihood choice.

    Attributes:
        index: the chosen option's position (the argmax of ``logprobs``; the first on a tie).
        option: the chosen option's text.
        logprobs: each option's summed token log-probability after the prompt.
        usage: prompt tokens scored (once) and option tokens scored, and the call's latency.
    """

    index: int
    option: str
    logprobs: tuple[float, ...]
    usage: Usage

    @property
    def probs(self) -> tuple[float, ...]:
        """The options' probabilities renormalised over the options (a softmax of ``logprobs``)."""
        top = max(self.logprobs)
        w = [math.exp(lp - top) for lp in self.logprobs]
        s = sum(w)
        return tuple(x / s for x in w)


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def score_continuations(
    local: Any, prompt: str, options: Sequence[str], *, method: str = "prefix", reuse_prefix: bool = True
) -> list[float]:
    """``log P(option | prompt)`` for each option under a loaded local model (summed over its tokens).

    Args:
        local: a :class:`~sepsis_sdk.llm.LocalModel` (:func:`~sepsis_sdk.llm.load_local_model`).
        prompt: the rendered prompt (``local.render(messages)``).
        options: the candidate continuations (each at least one token).
        method: ``"prefix"`` (prompt once, KV cache reused by a batch of continuations) or ``"batch"``
            (one padded pass over the full sequences).
        reuse_prefix: with ``"prefix"``, start from a stored KV cache of an earlier prompt on this model
            and run only the tokens after the part both share; the scores are the same. Two are kept:
            the *family* prompt (the last one that shared fewer than ``MIN_REUSE`` tokens with every
            stored one: a sweep's prompts share its system prompt and patient header) and the *last*
            prompt (a PSR decision's refine prompt repeats its propose prompt's system prompt and patient
            text); the longer shared part wins. After changing the weights in place, call
            :func:`forget_prefix`.

    Returns:
        One float per option, in order.
    """
    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}")
    if not options:
        raise UserError("need at least one option to choose from")
    tok = local.tokenizer
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    c_ids = [tok(str(o), add_special_tokens=False)["input_ids"] for o in options]
    if not p_ids:
        raise UserError("the prompt tokenizes to nothing: nothing to condition on")
    empty = [str(o) for o, c in zip(options, c_ids, strict=True) if not c]
    if empty:
        raise UserError(f"options that tokenize to nothing cannot be scored: {empty}")
    with (
        local._gen_lock,
        local.torch.inference_mode(),
    ):  # one model, one forward at a time (shared with generate)
        if method == "prefix":
            return _score_prefix(local, p_ids, c_ids, reuse_prefix)
        return _score_batch(local, p_ids, c_ids)


def _pad(rows: list[list[int]], pad: int) -> tuple[list[list[int]], list[list[int]]]:
    width = max(len(r) for r in rows)
    return [r + [pad] * (width - len(r)) for r in rows], [[1] * len(r) + [0] * (width - len(r)) for r in rows]


def _gather(logp: Any, rows: list[list[int]], offset: int) -> list[float]:
    """Sum over each row of ``logp[b, offset + k - 1, rows[b][k]]`` (position ``offset-1`` predicts token 0)."""
    out = []
    for b, ids in enumerate(rows):
        pos = range(offset - 1, offset - 1 + len(ids))
        out.append(float(sum(logp[b, p, t].item() for p, t in zip(pos, ids, strict=True))))
    return out


def _score_batch(local: Any, p_ids: list[int], c_ids: list[list[int]]) -> list[float]:
    torch = local.torch
    # Right padding: a real token never attends to a later pad under the causal mask, so the padded tail
    # changes no real position's logits (the attention mask is passed anyway).
    ids, mask = _pad([p_ids + c for c in c_ids], int(local.tokenizer.pad_token_id))
    x = torch.tensor(ids, device=local.device)
    m = torch.tensor(mask, device=local.device)
    logits = local.model(input_ids=x, attention_mask=m, use_cache=False).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    return _gather(logp, c_ids, len(p_ids))


def _forward_params(model: Any) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper
    return inspect.signature(base.forward).parameters


# Stored prompt KV caches per loaded model ("family" and "last", see score_continuations), so the next
# prompt runs only the tokens after the part it shares with one of them. Measured on the PSR graph
# (benchmarks/bench_llm_choice.py --psr): the refine prompt reuses its propose prompt's ~415 tokens.
_PREFIXES: weakref.WeakKeyDictionary[Any, dict[str, tuple[list[int], Any]]] = weakref.WeakKeyDictionary()
MIN_REUSE = 16  # shared tokens worth a cache copy


def forget_prefix(local: Any) -> None:
    """Drop the stored prompt cache of ``local`` (call it after changing the model's weights in place)."""
    with local._gen_lock:
        _PREFIXES.pop(local, None)


def prefix_stats(local: Any) -> dict[str, int]:
    """How many prompt tokens :func:`score_continuations` computed and reused from the last prompt (this model)."""
    return dict(getattr(local, "_choice_stats", {"computed": 0, "reused": 0}))


def _count(local: Any, computed: int, reused: int) -> None:
    stats = getattr(local, "_choice_stats", None)
    if stats is None:
        stats = {"computed": 0, "reused": 0}
        local._choice_stats = stats
    stats["computed"] += computed
    stats["reused"] += reused


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _rows(c_ids: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct token rows to feed (each option without its last token; a row that is a prefix of a
    longer one is dropped: the longer row's logits cover it) and, per option, the row it reads from."""
    inputs = [c[:-1] for c in c_ids]
    rows: list[list[int]] = []
    for inp in sorted({tuple(i) for i in inputs if i}, key=len, reverse=True):
        if not any(tuple(r[: len(inp)]) == inp for r in rows):
            rows.append(list(inp))
    which = [next((j for j, r in enumerate(rows) if r[: len(i)] == i), -1) if i else -1 for i in inputs]
    return rows, which


def _score_prefix(local: Any, p_ids: list[int], c_ids: list[list[int]], reuse: bool = True) -> list[float]:
    torch = local.torch
    params = _forward_params(local.model)
    # transformers 5.2x renamed ``past_key_values`` to ``cache`` (the old name warns): use what it takes.
    cache_kw = "cache" if "cache" in params else "past_key_values"
    keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}  # the prompt's last position only
    slots = _PREFIXES.get(local) if reuse else None
    stored, shared = None, 0
    for entry in (slots or {}).values():  # the stored prompt sharing the longest start with this one
        n = min(_common(entry[0], p_ids), len(p_ids) - 1)
        if n > shared or (n == shared and stored is not None and len(entry[0]) < len(stored[0])):
            stored, shared = entry, n  # on a tie the shorter one: less cache to copy and crop
    if stored is not None and shared >= MIN_REUSE:
        past = copy.deepcopy(stored[1])
        extra = past.get_seq_length() - shared
        if extra > 0:  # a negative count removes that many tokens (transformers 4.x and 5.x alike)
            past.crop(-extra)
        x = torch.tensor([p_ids[shared:]], device=local.device)
        out = local.model(input_ids=x, use_cache=True, **{cache_kw: past}, **keep)
    else:
        shared = 0
        out = local.model(input_ids=torch.tensor([p_ids], device=local.device), use_cache=True, **keep)
    _count(local, len(p_ids) - shared, shared)
    cache = out[cache_kw] if cache_kw in out else out["past_key_values"]
    if reuse:  # this prompt is the new "last"; one sharing too little with every stored one starts a family
        entry = (list(p_ids), copy.deepcopy(cache))
        slots = _PREFIXES.setdefault(local, {})
        slots["last"] = entry
        if shared == 0 or "family" not in slots:
            slots["family"] = entry
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each option's first token
    scores = [float(first[c[0]].item()) for c in c_ids]
    rows, which = _rows(c_ids)
    if not rows:
        return scores
    cache.batch_repeat_interleave(len(rows))  # the prompt's keys/values, once per row
    # Right padding: pads come after every real token of their row, so they change nothing read here.
    ids, row_mask = _pad(rows, int(local.tokenizer.pad_token_id))
    mask = torch.ones((len(rows), len(p_ids) + len(ids[0])), dtype=torch.long, device=local.device)
    mask[:, len(p_ids) :] = torch.tensor(row_mask, device=local.device)
    logits = local.model(
        input_ids=torch.tensor(ids, device=local.device),
        attention_mask=mask,
        use_cache=True,
        **{cache_kw: cache},
    ).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    for b, c in enumerate(c_ids):
        for k, t in enumerate(c[1:]):  # token k+1 of the option is predicted at row position k
            scores[b] += float(logp[which[b], k, t].item())
    return scores


class LogLikChooser:
    """Pick one of N answer strings by a local model's log-likelihood, in one or two forward passes.

    Args:
        model: a ``local/...`` model string (``"local/smollm2"``, ``"local/<folder>"``, ``"?adapter=..."``),
            a :class:`~sepsis_sdk.llm.LocalModel`, or a :class:`~sepsis_sdk.llm.LiteLLMChat` on a
            ``local/`` model (its ``adapter``/``device``/``dtype`` keywords are used).
        method: ``"prefix"`` or ``"batch"`` (see :func:`score_continuations`).
        adapter: a PEFT adapter folder (for a model string).
        device: ``"cpu"``/``"cuda"`` (for a model string).
        dtype: ``"float32"``, ``"bfloat16"``, ... (for a model string).
    """

    def __init__(
        self,
        model: Any,
        *,
        method: str = "prefix",
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        if method not in METHODS:
            raise UserError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        self._local: Any = None
        self._spec: tuple[str, dict[str, Any]] | None = None
        if isinstance(model, str):
            if not model.startswith("local/"):
                raise UserError(
                    f"log-likelihood choice needs an in-process model ('local/...'), got {model!r}: a hosted "
                    "chat API does not return the log-likelihood of arbitrary answers"
                )
            extra = {k: v for k, v in {"adapter": adapter, "device": device, "dtype": dtype}.items() if v}
            self._spec = (model, extra)
            self.name = model
        elif hasattr(model, "tokenizer") and hasattr(model, "model") and hasattr(model, "render"):
            self._local = model
            self.name = f"local/{getattr(model, 'name', 'model')}"
        else:
            raise UserError(f"LogLikChooser needs a 'local/...' model string or a LocalModel, got {model!r}")

    def __repr__(self) -> str:
        return f"LogLikChooser({self.name!r}, method={self.method!r})"

    @property
    def local(self) -> Any:
        """The loaded :class:`~sepsis_sdk.llm.LocalModel` (loaded on first use, once per process)."""
        if self._local is None:
            from sepsis_sdk.llm._local import load_local_model

            assert self._spec is not None
            self._local = load_local_model(self._spec[0], **self._spec[1])
        return self._local

    def check_config(self) -> None:
        """Check the model string without loading it (a missing path or package raises now)."""
        if self._spec is not None:
            from sepsis_sdk.llm._local import check_local_config

            check_local_config(self._spec[0], adapter=self._spec[1].get("adapter"))

    def score(self, messages: list[dict[str, Any]] | str, options: Sequence[str]) -> list[float]:
        """Each option's log-likelihood after ``messages`` (rendered with the chat template) or a raw prompt."""
        local = self.local
        prompt = messages if isinstance(messages, str) else local.render(messages)
        return score_continuations(local, prompt, options, method=self.method)

    def choose(self, messages: list[dict[str, Any]] | str, options: Sequence[str]) -> Choice:
        """The most likely option (first on a tie) with every option's log-likelihood.

        Raises:
            UserError: no options, or an option that tokenizes to nothing.
            LLMCallError: the forward pass failed (a run-time failure: an agent graph's fallback acts).
        """
        options = [str(o) for o in options]
        t0 = time.perf_counter()
        try:
            local = self.local
            prompt = messages if isinstance(messages, str) else local.render(messages)
            scores = score_continuations(local, prompt, options, method=self.method)
            n_prompt = len(local.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        except (UserError, LLMCallError):
            raise
        except Exception as exc:  # out of memory, bad weights: a model failure, not configuration
            if type(exc).__module__.startswith("sepsis_sdk"):
                raise
            raise LLMCallError(
                f"log-likelihood scoring failed: {type(exc).__name__}: {exc}", model=self.name
            ) from exc
        i = _argmax(scores)
        usage = Usage(
            prompt_tokens=n_prompt,
            completion_tokens=0,
            latency_s=time.perf_counter() - t0,
            calls=1,
        )
        return Choice(index=i, option=options[i], logprobs=tuple(scores), usage=usage)


def as_chooser(model: Any, *, method: str = "prefix") -> Any:
    """A chooser for ``model``: an object with ``choose(messages, options)`` is used as it is; a
    ``local/`` model string, a :class:`~sepsis_sdk.llm.LocalModel` or a ``LiteLLMChat`` on a ``local/``
    model becomes a :class:`LogLikChooser`.

    Raises:
        UserError: any other model (a hosted model has no log-likelihoods of arbitrary answers here).
    """
    if callable(getattr(model, "choose", None)):
        return model
    if isinstance(model, str):
        return LogLikChooser(model, method=method)
    name = getattr(model, "model", None)
    if isinstance(name, str) and hasattr(model, "litellm_kwargs"):  # a LiteLLMChat
        kw = {k: model.litellm_kwargs.get(k) for k in ("adapter", "device", "dtype")}
        return LogLikChooser(name, method=method, **kw)
    return LogLikChooser(model, method=method)
