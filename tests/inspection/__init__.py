"""Tests of llmkit/inspect (a folder named `inspect` would shadow the standard library)."""
