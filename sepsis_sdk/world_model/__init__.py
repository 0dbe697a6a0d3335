"""sepsis_sdk.world_model."""
