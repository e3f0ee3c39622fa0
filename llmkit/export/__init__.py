"""A trained model leaves llmkit: a folder that `transformers` loads with identical logits.

`export_model` writes config.json, model.safetensors, the tokenizer files,
generation_config.json and a model card; `verify_export` checks the folder against llmkit
with `transformers`; `load_span_model` reads a span export back (span models have no
`transformers` class). `architectures` is the table of exact counterparts.
"""

from __future__ import annotations

from llmkit.export.architectures import ARCHITECTURES, UnsupportedArchitecture, choose
from llmkit.export.span import SpanExport, load_span_model
from llmkit.export.verify import Verification, VerifyError, verify_export, verify_span_export
from llmkit.export.write import ExportResult, export_model

__all__ = [
    "ARCHITECTURES",
    "ExportResult",
    "SpanExport",
    "UnsupportedArchitecture",
    "Verification",
    "VerifyError",
    "choose",
    "export_model",
    "load_span_model",
    "verify_export",
    "verify_span_export",
]
