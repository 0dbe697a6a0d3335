"""sepsis_sdk.testing."""
