"""End-to-end tests: the installed `llmkit` command run in subprocesses, as a user runs it."""
