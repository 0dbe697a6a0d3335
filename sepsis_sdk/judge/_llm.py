"""`LLMJudge`: a (vision) language model decides each rubric criterion, validated and never silently 0.

The protocol is written once as a generator (it yields the messages to send and receives the reply or the
call error), and driven by a sync and an async loop, so ``judge`` and ``ajudge`` cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sepsis_sdk.errors import LLMCallError, LLMOutputError, UserError
from sepsis_sdk.judge._images import fit_image, image_part
from sepsis_sdk.judge._types import Criterion, CriterionVerdict, Evidence, Rubric, Verdict
from sepsis_sdk.llm import ChatModel, ChatResponse, Message, Usage, is_payload_too_large

SYSTEM_PROMPT = (
    "You are a strict, careful evaluator. You decide each numbered criterion from the evidence alone. "
    "A positive point scores 1 when the evidence clearly shows it, else 0. A penalty point scores 1 when "
    "the evidence shows the problem it describes, else 0. Answer with one JSON object and nothing else."
)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)

Step = Generator[list[Message], "ChatResponse | Exception", "_GroupResult"]


class _InvalidReply(ValueError):
    pass


@dataclass
class _GroupResult:
    verdicts: list[CriterionVerdict]
    reasoning: str = ""
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    kind: Literal["call", "reply"] | None = None


def _is_empty_reply(exc: Exception) -> bool:
    """A 200 reply without ``choices``: a provider hiccup (seen on busy gateways), worth asking again."""
    if not isinstance(exc, LLMOutputError):
        return False
    raw = getattr(exc, "raw", None)
    if isinstance(raw, dict) and "choices" in raw and not raw["choices"]:
        return True
    return "has no choices" in str(exc)


def extract_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (bare, or inside a Markdown code fence)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        candidate = candidate.strip()
        start = candidate.find("{")
        if start < 0:
            continue
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate[start:])
            return value
        except json.JSONDecodeError:
            continue
    raise _InvalidReply("the reply holds no JSON object")


def _as_binary(value: Any, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    raise _InvalidReply(f"{where} must be 0 or 1, got {value!r}")


def parse_scores(text: str, n: int) -> tuple[list[int], str, list[str] | None]:
    """Validate a judge reply: exactly ``n`` scores, each 0 or 1.

    Accepts ``{"scores": [...], "reasoning": "..."}`` (and, for one criterion, ``{"score": x, ...}``), with
    optional per-criterion ``"reasons"``.

    Returns:
        ``(scores, reasoning, reasons or None)``.

    Raises:
        ValueError: what is wrong, phrased so it can be sent back to the model.
    """
    obj = extract_json_object(text)
    if not isinstance(obj, dict):
        raise _InvalidReply("the reply must be a JSON object")
    scores = obj.get("scores")
    if scores is None and n == 1 and "score" in obj:
        scores = [obj["score"]]
    if not isinstance(scores, list):
        raise _InvalidReply('the object needs a "scores" list')
    if len(scores) != n:
        raise _InvalidReply(f'"scores" has {len(scores)} values but there are {n} criteria; give exactly {n}')
    values = [_as_binary(s, f"score {i + 1}") for i, s in enumerate(scores)]
    reasoning = obj.get("reasoning", obj.get("reason", ""))
    reasoning = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
    reasons = obj.get("reasons")
    if not (isinstance(reasons, list) and len(reasons) == n and all(isinstance(r, str) for r in reasons)):
        reasons = None
    return values, reasoning, reasons


def verdict_response_format(n: int) -> dict[str, Any]:
    """An OpenAI ``response_format`` for a verdict on ``n`` criteria: exactly n scores in {0, 1}."""
    schema = {
        "type": "object",
        "properties": {
            "scores": {"type": "array", "items": {"enum": [0, 1]}, "minItems": n, "maxItems": n},
            "reasoning": {"type": "string", "maxLength": 800},
        },
        "required": ["scores", "reasoning"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}


def _criterion_line(i: int, c: Criterion) -> str:
    kind = "positive" if c.sign > 0 else "penalty (score 1 if the evidence SHOWS this problem)"
    return f"{i}. [{kind}] {c.text}"


class LLMJudge:
    """Decides rubric criteria with a chat model (text and images), MicroWorldBench style.

    ``mode="grouped"`` (the MicroWorldBench protocol): one call per rubric listing every criterion as a
    positive or penalty point and asking for strict JSON ``{"scores": [0|1, ...], "reasoning": "..."}``.
    ``mode="per_criterion"``: one call per criterion (more calls, less cross-talk between criteria).

    Each reply is validated (exactly one 0/1 per criterion); an invalid reply is re-asked with the error,
    up to ``max_reasks`` times, after which those criteria are **unscored** (``score=None``) and
    ``Verdict.error`` says why (``Verdict.error_kind="reply"``). A provider failure after the model's own
    retries also leaves them unscored (``error_kind="call"``). A reply that carries no ``choices`` is asked
    again, up to ``empty_retries`` times, before it counts as a failed call.
    When the provider rejects the request as too large (HTTP 413 or "request too large"), images are halved
    in side (re-encoded as JPEG) and the call is retried, down to ``min_image_side``.

    Args:
        model: a :class:`~sepsis_sdk.llm.ChatModel` or a LiteLLM model string (vision-capable for images).
        mode: ``"grouped"`` or ``"per_criterion"``.
        max_reasks: re-asks after an invalid reply.
        image_detail: the OpenAI ``detail`` of image parts (``"low"``, ``"high"``, ``"auto"``; ``None`` omits).
        max_image_side: images larger than this (longer side, pixels) are scaled down before sending;
            ``None`` sends them as given.
        min_image_side: the smallest side the payload-too-large shrinking goes to.
        image_quality: JPEG quality (1-100) of images the judge re-encodes (scaled to ``max_image_side``
            or shrunk after a payload-too-large error); images it sends as given keep their encoding.
        empty_retries: times a reply without ``choices`` is asked again before the criteria are unscored.
        name: the judge's name in verdicts (default ``"llm:<model name>"``).
        system_prompt: replaces the default system message.
        json_schema: send ``response_format={"type": "json_schema", ...}`` describing the exact reply (a
            ``scores`` array of N values in {0, 1}, and ``reasoning``). ``None`` (default): only for
            in-process ``local/`` models, whose provider then decodes under that schema, so even a small
            model returns a well-formed verdict; hosted providers differ in support, so it is opt-in there.
        **completion_kwargs: passed to every ``complete`` call (e.g. ``temperature=0``).

    Example:
        >>> from sepsis_sdk.judge import Criterion, Evidence, LLMJudge, Rubric
        >>> from sepsis_sdk.testing import ScriptedChatModel
        >>> judge = LLMJudge(ScriptedChatModel(['{"scores": [1, 0], "reasoning": "ok"}']))
        >>> rubric = Rubric(name="r", criteria=(Criterion(id="a", text="A"), Criterion(id="b", text="B", sign=-1)))
        >>> judge.judge(rubric, Evidence(text="...")).scores
        {'a': 1, 'b': 0}
    """

    def __init__(
        self,
        model: ChatModel | str,
        *,
        mode: Literal["grouped", "per_criterion"] = "grouped",
        max_reasks: int = 2,
        image_detail: str | None = "auto",
        max_image_side: int | None = 1024,
        min_image_side: int = 64,
        image_quality: int = 85,
        empty_retries: int = 2,
        name: str | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        json_schema: bool | None = None,
        **completion_kwargs: Any,
    ) -> None:
        if isinstance(model, str):
            from sepsis_sdk.llm import LiteLLMChat

            model = LiteLLMChat(model)
        if mode not in ("grouped", "per_criterion"):
            raise UserError(f"LLMJudge mode must be 'grouped' or 'per_criterion', got {mode!r}")
        if max_reasks < 0:
            raise UserError(f"max_reasks must be >= 0, got {max_reasks}")
        if empty_retries < 0:
            raise UserError(f"empty_retries must be >= 0, got {empty_retries}")
        if not 1 <= int(image_quality) <= 100:
            raise UserError(f"image_quality must be in 1..100, got {image_quality}")
        self.model = model
        self.mode = mode
        self.max_reasks = int(max_reasks)
        self.image_detail = image_detail
        self.max_image_side = max_image_side
        self.min_image_side = int(min_image_side)
        self.image_quality = int(image_quality)
        self.empty_retries = int(empty_retries)
        self.name = name or f"llm:{getattr(model, 'name', type(model).__name__)}"
        self.system_prompt = system_prompt
        self.completion_kwargs = completion_kwargs
        self.json_schema = (
            bool(getattr(model, "in_process", False)) if json_schema is None else bool(json_schema)
        )

    def __repr__(self) -> str:
        return f"LLMJudge({self.name!r}, mode={self.mode!r})"

    # ---------------------------------------------------------------- prompt
    def build_messages(
        self,
        rubric: Rubric,
        criteria: Sequence[Criterion],
        evidence: Evidence,
        images: Sequence[tuple[bytes, str]],
    ) -> list[Message]:
        """The messages of one judge call (public so users can inspect or snapshot prompts)."""
        n = len(criteria)
        lines = []
        if rubric.instructions:
            lines.append(rubric.instructions.strip())
        if evidence.text:
            lines += ["Evidence:", evidence.text.strip()]
        if images:
            lines.append(f"{len(images)} image(s) are attached, in order.")
        lines.append(f"Criteria ({n}):")
        lines += [_criterion_line(i + 1, c) for i, c in enumerate(criteria)]
        lines.append(
            f'Reply with only a JSON object: {{"scores": [{", ".join(["0|1"] * n)}], "reasoning": "..."}} '
            f"with exactly {n} score(s), each 0 or 1, in the order of the criteria."
        )
        content: list[dict[str, Any]] = [{"type": "text", "text": "\n".join(lines)}]
        content += [image_part(img, mime, self.image_detail) for img, mime in images]
        user: Message = {"role": "user", "content": content if images else content[0]["text"]}
        return [{"role": "system", "content": self.system_prompt}, user]

    def _prepare_images(self, evidence: Evidence, side: int | None) -> list[tuple[bytes, str]]:
        if side is None:
            return [(img, evidence.image_mime) for img in evidence.images]
        return [fit_image(img, side, quality=self.image_quality) for img in evidence.images]

    def _start_side(self, evidence: Evidence) -> int | None:
        return self.max_image_side if evidence.images else None

    def _shrunk_side(self, evidence: Evidence, side: int | None) -> int | None:
        if not evidence.images:
            return None
        from sepsis_sdk.judge._images import image_size

        # Halve what was really sent: the largest image's longer side, capped by the current limit
        # (halving a limit larger than the images would send the same payload again).
        actual = max(max(image_size(img)) for img in evidence.images)
        side = actual if side is None else min(side, actual)
        new = side // 2
        return new if new >= self.min_image_side else None

    # ---------------------------------------------------------------- protocol
    def _protocol(self, rubric: Rubric, criteria: Sequence[Criterion], evidence: Evidence) -> Step:
        n = len(criteria)
        side = self._start_side(evidence)
        images = self._prepare_images(evidence, side)
        base = self.build_messages(rubric, criteria, evidence, images)
        messages = list(base)
        usage = Usage()
        attempts = 0
        shrinks = 0
        empties = 0
        while True:
            outcome = yield messages
            if isinstance(outcome, Exception) and _is_empty_reply(outcome) and empties < self.empty_retries:
                empties += 1
                continue  # the same request again: nothing was answered
            if isinstance(outcome, Exception):
                if is_payload_too_large(outcome) or is_payload_too_large(outcome.__cause__ or outcome):
                    new_side = self._shrunk_side(evidence, side)
                    if new_side is not None:
                        side, shrinks = new_side, shrinks + 1
                        images = self._prepare_images(evidence, side)
                        base = self.build_messages(rubric, criteria, evidence, images)
                        messages = list(base) + messages[len(base) :]
                        continue
                return self._unscored(criteria, f"judge call failed: {outcome}", usage)
            usage = usage + outcome.usage
            attempts += 1
            try:
                scores, reasoning, reasons = parse_scores(outcome.text, n)
            except ValueError as exc:
                if attempts > self.max_reasks:
                    return self._unscored(
                        criteria,
                        f"invalid judge reply after {attempts} attempt(s): {exc}",
                        usage,
                        raw=outcome.text,
                        kind="reply",
                    )
                messages = [
                    *messages,
                    {"role": "assistant", "content": outcome.text},
                    {
                        "role": "user",
                        "content": f"Your reply was invalid: {exc}. Reply again with only the JSON object, "
                        f"exactly {n} score(s), each 0 or 1.",
                    },
                ]
                continue
            verdicts = [
                CriterionVerdict(criterion_id=c.id, score=s, reason=(reasons[i] if reasons else reasoning))
                for i, (c, s) in enumerate(zip(criteria, scores, strict=True))
            ]
            note = f" (images shrunk {shrinks}x to side {side})" if shrinks else ""
            return _GroupResult(verdicts, reasoning + note if note and reasoning else reasoning, None, usage)

    @staticmethod
    def _unscored(
        criteria: Sequence[Criterion],
        error: str,
        usage: Usage,
        raw: str | None = None,
        kind: Literal["call", "reply"] = "call",
    ) -> _GroupResult:
        ids = ", ".join(c.id for c in criteria)
        message = f"criteria [{ids}] unscored: {error}"
        if raw is not None:
            message += f"; last reply: {raw[:300]!r}"
        return _GroupResult(
            [CriterionVerdict(criterion_id=c.id, score=None, reason=f"unscored: {error}") for c in criteria],
            "",
            message,
            usage,
            kind,
        )

    def _kwargs(self, n: int) -> dict[str, Any]:
        if not self.json_schema or "response_format" in self.completion_kwargs:
            return self.completion_kwargs
        return {**self.completion_kwargs, "response_format": verdict_response_format(n)}

    def _groups(self, rubric: Rubric) -> list[tuple[Criterion, ...]]:
        if self.mode == "grouped":
            return [rubric.criteria]
        return [(c,) for c in rubric.criteria]

    def _call_error(self, exc: Exception) -> Exception:
        # Provider failures become unscored criteria; misuse (guard, bad arguments, exhausted scripts) raises.
        if isinstance(exc, (LLMCallError, LLMOutputError)):
            return exc
        raise exc

    def _combine(self, rubric: Rubric, results: list[_GroupResult]) -> Verdict:
        usage = Usage()
        for r in results:
            usage = usage + r.usage
        errors = [r.error for r in results if r.error]
        kinds = {r.kind for r in results if r.error}
        # a failed call outranks a bad answer: it is the one that says the judge may be down
        kind = "call" if "call" in kinds else ("reply" if kinds else None)
        reasoning = "\n".join(r.reasoning for r in results if r.reasoning)
        return Verdict(
            rubric=rubric.name,
            judge=self.name,
            verdicts=tuple(v for r in results for v in r.verdicts),
            reasoning=reasoning,
            error="; ".join(errors) if errors else None,
            error_kind=kind,
            usage=usage.to_dict(),
        )

    def judge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        """Judge every criterion of ``rubric`` on ``evidence``."""
        results = []
        for group in self._groups(rubric):
            gen = self._protocol(rubric, group, evidence)
            messages = next(gen)
            while True:
                try:
                    outcome: ChatResponse | Exception = self.model.complete(
                        messages, **self._kwargs(len(group))
                    )
                except Exception as exc:
                    outcome = self._call_error(exc)
                try:
                    messages = gen.send(outcome)
                except StopIteration as stop:
                    results.append(stop.value)
                    break
        return self._combine(rubric, results)

    async def _adrive(self, rubric: Rubric, group: Sequence[Criterion], evidence: Evidence) -> _GroupResult:
        gen = self._protocol(rubric, group, evidence)
        messages = next(gen)
        while True:
            try:
                outcome: ChatResponse | Exception = await self.model.acomplete(
                    messages, **self._kwargs(len(group))
                )
            except Exception as exc:
                outcome = self._call_error(exc)
            try:
                messages = gen.send(outcome)
            except StopIteration as stop:
                return stop.value

    async def ajudge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        """Async :meth:`judge`; in ``per_criterion`` mode the calls run concurrently (results keep rubric order)."""
        import asyncio

        results = await asyncio.gather(*(self._adrive(rubric, g, evidence) for g in self._groups(rubric)))
        return self._combine(rubric, list(results))
