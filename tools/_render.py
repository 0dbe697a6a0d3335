"""Moved to the public core module :mod:`sepsis_sdk.render`; this shim keeps old imports working for one release."""

from sepsis_sdk.render import (  # noqa: F401
    KEY_FEATURES,
    action_label,
    history_trends,
    infer_schema,
    key_features,
    render_history,
    schema_for,
    short_action,
)
