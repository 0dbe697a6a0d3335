"""sepsis_sdk.policies."""
