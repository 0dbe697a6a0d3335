"""sepsis_sdk.llm."""
