"""Shared fixtures (keep small: only what many test files use)."""

from __future__ import annotations

from pathlib import Path

import pytest

# pytester: for testing the opt-in plugin; the plugin itself: its fixtures (fake_chat, fake_llm_endpoint,
# block_llm_requests) are useful to every test file here, exactly as a user would enable them.
pytest_plugins = ["pytester", "sepsis_sdk.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder beside the repository (``../shared``); tests needing it skip when absent."""
    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path}")
    return path


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray with 2 CPUs and no dashboard, started once and shared by every Ray test of the session.

    A module whose functions must reach the workers registers itself for pickling by value in its own
    ``ray_cluster`` fixture (under ``--import-mode=importlib`` the workers cannot import it by name).
    """
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="sepsis-sdk-tests")
    yield ray
    if started:
        ray.shutdown()
