"""One module per CLI verb: the story of that command, calling the rooms of the package.

`llmkit/cli.py` parses the command line and calls the `run` function (or its named
equivalent) of the module here; nothing in this package parses arguments or catches
`LlmkitError`.
"""
