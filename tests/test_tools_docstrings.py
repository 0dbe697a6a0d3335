"""Tool descriptions come from docstrings through docstring_parser (issue 11: the well-kept library)."""

from __future__ import annotations

from sepsis_sdk.tools import parse_google_docstring, tool


def test_rest_and_numpy_docstrings_describe_arguments_too():
    # The hand-written parser read Google style only: these arguments came out undescribed.
    rest = "Simulate candidates.\n\n:param actions: the actions to try\n:param horizon: 4-hour steps\n"
    assert parse_google_docstring(rest) == (
        "Simulate candidates.",
        {"actions": "the actions to try", "horizon": "4-hour steps"},
    )
    numpy = "Simulate.\n\nParameters\n----------\nhorizon : int\n    4-hour steps\n"
    assert parse_google_docstring(numpy)[1] == {"horizon": "4-hour steps"}


def test_google_docstrings_as_before():
    doc = """Recent lactate
    over several steps.

    More for humans.

    Args:
        n_steps (int): how many 4-hour steps
            to show.
        **extra: ignored.

    Returns:
        text.
    """
    assert parse_google_docstring(doc) == (
        "Recent lactate over several steps.",
        {"n_steps": "how many 4-hour steps to show.", "extra": "ignored."},
    )
    assert parse_google_docstring(None) == ("", {})


def test_tool_schema_uses_the_parsed_descriptions():
    @tool
    def trend(n_steps: int = 3) -> str:
        """Lactate trend.

        :param n_steps: steps to show
        """
        return ""

    assert trend.description == "Lactate trend."
    assert trend.parameters["properties"]["n_steps"]["description"] == "steps to show"
