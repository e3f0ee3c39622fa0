"""Plain-torch inspection of trained models: numerics in bits, the logit and tuned lens,
versioned strict-JSON reports and self-contained HTML pages. No Lightning in here: the CLI
and the training callbacks call it.
"""
