"""Issue 11: training from Python is neither silent nor slow by default: progress lines unless
``progress=False``, one CPU thread (fast on 2 shared cores), and the same defaults in the API and the CLI."""

from __future__ import annotations

import inspect
from typing import ClassVar

import pytest

from sepsis_sdk.world_model import DEFAULT_THREADS, register_backend, train_world_model
from sepsis_sdk.world_model import _io as wm_io


class _Recorder:
    """A backend whose fit records the runtime options it was given and reports two steps."""

    backend = "recorder-test"
    config_class = None
    seen: ClassVar[dict] = {}

    @classmethod
    def fit(cls, cohort, config=None, *, progress=None, threads=None):
        cls.seen = {"threads": threads, "progress": progress}
        if progress is not None:
            progress(1, 2, {"loss": 0.5})
            progress(2, 2, {"loss": 0.25})
        return cls()


@pytest.fixture
def recorder():
    register_backend("recorder-test", _Recorder)
    yield _Recorder
    wm_io._BACKENDS.pop("recorder-test", None)


def test_train_world_model_reports_progress_and_uses_one_thread_by_default(recorder, capsys):
    assert DEFAULT_THREADS == 1
    train_world_model(None, "recorder-test")
    assert recorder.seen["threads"] == 1  # before: None (all cores: 2 threads spin on a shared machine)
    err = capsys.readouterr().err
    assert "training recorder-test world model: 1/2 loss=0.5000" in err  # before: nothing at all
    assert "2/2 loss=0.2500" in err  # the last step is always shown


def test_progress_false_is_silent_and_a_callback_replaces_the_printer(recorder, capsys):
    train_world_model(None, "recorder-test", progress=False, threads=None)
    assert recorder.seen == {"threads": None, "progress": None}
    assert capsys.readouterr().err == ""
    calls = []
    train_world_model(None, "recorder-test", progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [1, 2] and capsys.readouterr().err == ""


def test_the_api_and_the_cli_share_the_defaults():
    from sepsis_sdk.cli.world_model import app
    from sepsis_sdk.training.world_model import train_on_cohort

    api = inspect.signature(train_world_model).parameters
    assert api["threads"].default == DEFAULT_THREADS and api["progress"].default is True
    tr = inspect.signature(train_on_cohort).parameters
    assert tr["threads"].default == DEFAULT_THREADS and tr["progress"].default is True
    (train_cmd,) = [c for c in app.registered_commands if (c.name or c.callback.__name__) == "train"]
    cli = inspect.signature(train_cmd.callback).parameters
    assert cli["threads"].default.default == DEFAULT_THREADS  # a typer.Option's default


@pytest.mark.slow
def test_a_real_torch_fit_prints_its_epochs(capsys):
    pytest.importorskip("torch")
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    wm = train_world_model(sample_cohort(30, seed=0), "torch", epochs=2, n_members=1, hidden=16)
    assert wm is not None
    err = capsys.readouterr().err
    assert "training torch world model: 2/2" in err
