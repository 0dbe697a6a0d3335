"""sepsis_sdk.evaluation."""
