"""sepsis_sdk.judge."""
