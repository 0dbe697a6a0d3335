"""sepsis_sdk.cli."""
