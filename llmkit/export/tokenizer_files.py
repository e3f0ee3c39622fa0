"""The tokenizer files of an export, so that `transformers.AutoTokenizer` gives exactly the
ids llmkit feeds the model.

Three details make the ids equal:
- `tokenizer(text)` (special tokens on, the default) gives `[EOS] + ids`, what `llmkit
  generate` feeds the model: documents are joined by EOS in training, so EOS is what
  precedes a text's start. A template post-processor adds it; `add_special_tokens=False`
  gives the bare ids, as `Tokenizer.encode` does.
- `split_special_tokens`: llmkit encodes a literal "<eos>" in the text as ordinary
  characters, never as the special id; transformers would otherwise split it out.
- The roles: `eos_token` and `bos_token` are both llmkit's EOS (as in GPT-2, where one
  token ends a text and begins the next); `pad_token` is PAD. llmkit's BOS token (id 1)
  stays in the vocabulary: span models use it, LMs never see it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import processors

from llmkit.fsutil import atomic_write_text
from llmkit.tokenizer import EOS_ID, UNK_TOKEN, Tokenizer


def tokenizer_json(tok: Tokenizer) -> str:
    """llmkit's tokenizer.json with a post-processor that puts EOS before each text."""
    hf = HFTokenizer.from_file(str(tok.path))
    eos = tok.eos_token
    template = processors.TemplateProcessing(
        single=f"{eos} $A", pair=f"{eos} $A {eos} $B:1", special_tokens=[(eos, EOS_ID)])
    # keep the existing step (byte-level BPE trims offsets there), then add EOS
    steps = [hf.post_processor, template] if hf.post_processor is not None else [template]
    hf.post_processor = processors.Sequence(steps)
    return hf.to_str(pretty=True)


def tokenizer_config(tok: Tokenizer, block_size: int) -> dict:
    """tokenizer_config.json: the class, the special-token roles, and the switches."""
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok.eos_token,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "split_special_tokens": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": block_size,
        "padding_side": "left",  # batched generation keeps each row's end aligned
    }
    if tok.unk_id is not None:
        config["unk_token"] = UNK_TOKEN  # char tokenizers: characters unseen in training
    return config


def write_tokenizer_files(tok: Tokenizer, block_size: int, out: Path) -> list[str]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out`."""
    config = tokenizer_config(tok, block_size)
    specials = {k: v for k, v in config.items() if k.endswith("_token")}
    files = {
        "tokenizer.json": tokenizer_json(tok),
        "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False) + "\n",
        "special_tokens_map.json": json.dumps(specials, indent=2, ensure_ascii=False) + "\n",
    }
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return list(files)
