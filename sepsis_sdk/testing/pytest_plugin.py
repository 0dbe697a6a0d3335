"""Opt-in pytest plugin with sepsis-sdk fixtures (never auto-loaded through an entry point).

Enable it in your ``conftest.py``::

    pytest_plugins = ["sepsis_sdk.testing.pytest_plugin"]

Fixtures:
    block_llm_requests: real LLM requests raise :class:`~sepsis_sdk.errors.RealRequestBlockedError` for the
        test. Make it autouse in your conftest with
        ``@pytest.fixture(autouse=True)\\ndef _no_llm(block_llm_requests): ...``, or set the ini option
        ``sepsis_block_llm_requests = true`` to block in every test.
    fake_chat: a factory ``fake_chat(*replies)`` returning a :class:`ScriptedChatModel`; after the test it
        fails if a scripted reply was never used (``fake_chat(..., strict=False)`` to allow leftovers).
    fake_llm_endpoint: a factory ``fake_llm_endpoint(*replies, api_base=...)`` that mounts a fake
        OpenAI-compatible endpoint on respx (needs the respx package) and returns a :class:`FakeEndpoint`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sepsis_sdk.testing import ScriptedChatModel, block_real_requests


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "sepsis_block_llm_requests",
        "block real LLM requests in every test (sepsis-sdk)",
        type="bool",
        default=False,
    )


@pytest.fixture
def block_llm_requests() -> Iterator[None]:
    """Real LLM requests fail inside the test; fakes, respx mocks and ``local/`` models still work."""
    with block_real_requests():
        yield


@pytest.fixture(autouse=True)
def _sepsis_block_llm_requests_ini(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.config.getini("sepsis_block_llm_requests"):
        with block_real_requests():
            yield
    else:
        yield


@pytest.fixture
def fake_chat() -> Iterator[Callable[..., ScriptedChatModel]]:
    """Factory for scripted fake chat models; checks at teardown that every reply was used."""
    made: list[tuple[ScriptedChatModel, bool]] = []

    def _make(
        *replies: Any, name: str = "fake", strict: bool = True, max_reasks: int = 2
    ) -> ScriptedChatModel:
        model = ScriptedChatModel(list(replies), name=name, max_reasks=max_reasks)
        made.append((model, strict))
        return model

    yield _make
    for model, strict in made:
        if strict and model.remaining:
            pytest.fail(f"fake chat model {model.name!r}: {model.remaining} scripted repl(ies) never used")


@pytest.fixture
def fake_llm_endpoint() -> Iterator[Callable[..., Any]]:
    """Factory mounting a fake OpenAI-compatible endpoint on a respx router started for the test."""
    respx = pytest.importorskip("respx")
    from sepsis_sdk.testing._respx import DEFAULT_API_BASE, fake_openai_endpoint

    with respx.mock(assert_all_called=False) as router:

        def _make(*replies: Any, api_base: str = DEFAULT_API_BASE, model: str = "gpt-4o-mini") -> Any:
            return fake_openai_endpoint(router, list(replies), api_base=api_base, model=model)

        yield _make
