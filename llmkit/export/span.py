"""Span models leave llmkit as weights and a shape, with llmkit's own loader.

`transformers` has no class for a bidirectional GPT trunk with a start/end head, and
calling it something it is not (a BERT, a GPT-2) would compute something else. So a span
export holds `model.safetensors` (the `SpanModel` state dict, real vocabulary rows only),
`config.json` in llmkit's own format (`"llmkit_format": "span"`), and the tokenizer files;
`load_span_model(DIR)` builds the model back from them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from llmkit.errors import CheckpointError
from llmkit.models.gpt import GPTConfig
from llmkit.models.span import SpanModel
from llmkit.tokenizer import Tokenizer

SPAN_FORMAT = "span"


def span_config(gpt: GPTConfig, max_span_tokens: int, nospan_threshold: float) -> dict:
    """config.json of a span export: the model shape and the decoder's settings."""
    return {
        "llmkit_format": SPAN_FORMAT,
        "gpt": asdict(replace(gpt, pad_vocab_multiple=1)),  # padding rows are not written
        "span": {"max_span_tokens": max_span_tokens, "nospan_threshold": nospan_threshold},
    }


def span_tensors(model: SpanModel) -> dict[str, torch.Tensor]:
    """The state dict to save: real vocabulary rows only, float32, each tensor its own."""
    sd = model.state_dict()
    sd["transformer.wte.weight"] = sd["transformer.wte.weight"][: model.config.vocab_size]
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}


@dataclass
class SpanExport:
    """What `load_span_model` gives back."""

    model: SpanModel  # float32, CPU, eval mode
    tokenizer: Tokenizer
    max_span_tokens: int  # for `decode_spans`
    nospan_threshold: float


def load_span_model(folder: str | Path) -> SpanExport:
    """Load a span model exported by `llmkit export` (no checkpoint, no project needed).

    Example:
        >>> exp = load_span_model("export/")
        >>> ids, offsets = exp.tokenizer.encode_offsets(text)  # then wrap in BOS/EOS
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path}: cannot read the export's config ({e})") from None
    if config.get("llmkit_format") != SPAN_FORMAT:
        raise CheckpointError(f"{config_path} is not an llmkit span export (no "
                              f"\"llmkit_format\": \"span\"); load LM exports with transformers")
    model = SpanModel(GPTConfig(**config["gpt"]))
    model.load_state_dict(load_file(folder / "model.safetensors"))
    model.eval()
    return SpanExport(model=model, tokenizer=Tokenizer.load(folder / "tokenizer.json"),
                      max_span_tokens=int(config["span"]["max_span_tokens"]),
                      nospan_threshold=float(config["span"]["nospan_threshold"]))
