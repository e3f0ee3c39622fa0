"""llmkit: train your own language or span-prediction model from your own data."""

__version__ = "0.1.0"
