"""`model.init_from`: start a span model's trunk from a language model trained on the
user's own text.

A span model trained from random weights on a few thousand examples learns little beyond
"no span"; the same trunk pre-trained as a causal LM on the user's raw text already knows
the words and how they go together. The two-step workflow (docs/training.md):

    llmkit new mylm --data corpus/ && cd mylm && llmkit train     # step 1: an LM
    # step 2: copy mylm/tokenizer/ into the span project (the same tokenizer), and in
    # its llmkit.yaml set model.init_from: ../mylm (or a .ckpt file)

The LM's trunk weights (embeddings, blocks, final norm) are copied into the span model;
its head is not (the span head starts fresh). Attention becomes bidirectional simply
because the span model's trunk is built with `causal=False`: the weights are the same, only
the mask differs. The tokenizer must be the very same file (checked by hash) and every
trunk shape must match; otherwise the error names both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmkit.checkpoint import (
    SHAPE_KEYS,
    check_tokenizer,
    find_checkpoint,
    load_checkpoint,
    shape_diffs,
)
from llmkit.config import CONFIG_NAME, Config, load_config
from llmkit.errors import CheckpointError
from llmkit.models import GPT, GPTConfig
from llmkit.tokenizer import Tokenizer

# The trunk's shape: what a checkpoint must match, less `causal` (the span trunk is
# bidirectional) and `tie_embeddings` (the head is not part of the trunk), plus the
# vocabulary (the embedding is).
TRUNK_KEYS = ("vocab_size", *(k for k in SHAPE_KEYS if k not in ("causal", "tie_embeddings")))
_TRUNK_PREFIX = "model.transformer."  # where an LMModule's state_dict keeps the trunk


def init_source(cfg: Config) -> Path:
    """The checkpoint `model.init_from` names: a .ckpt file, or an llmkit LM project
    (its latest run's best checkpoint).

    Raises:
        CheckpointError: the path does not exist, or the project has no checkpoint.
    """
    assert cfg.model.init_from is not None
    given = cfg.path(cfg.model.init_from)
    if given.is_dir():
        if not (given / CONFIG_NAME).is_file():
            raise CheckpointError(f"model.init_from: {given} is a folder without "
                                  f"{CONFIG_NAME}; give an llmkit LM project or a .ckpt file")
        return find_checkpoint(load_config(given), None)
    if not given.is_file():
        raise CheckpointError(f"model.init_from: {given} does not exist; give a .ckpt file "
                              f"or the folder of an llmkit LM project")
    return given


def init_trunk(trunk: GPT, cfg: Config, tok: Tokenizer) -> str:
    """Copy the trunk weights of the LM that `model.init_from` names into `trunk`.

    Returns:
        A line for the log saying what was loaded.

    Raises:
        CheckpointError: not an LM checkpoint, or a trunk shape differs (all named).
        VocabMismatchError: the LM was trained with another tokenizer (both hashes named).
    """
    path = init_source(cfg)
    ckpt = load_checkpoint(path)
    meta = ckpt.get("llmkit")
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"model.init_from: {path} is not an llmkit checkpoint")
    if meta.get("task") != "lm":
        raise CheckpointError(f"model.init_from: {path} is a {meta.get('task')} checkpoint; "
                              f"a span trunk starts from a language model (task lm)")
    check_tokenizer(meta, tok, f"model.init_from: {path}", name=cfg.tokenizer.path,
                    then="the token ids would mean different things: copy the LM project's "
                         "tokenizer/ files into this project (the data cache is then rebuilt)")
    _check_shape(meta, trunk.config, path)
    state = {k[len(_TRUNK_PREFIX):]: v for k, v in ckpt["state_dict"].items()
             if k.startswith(_TRUNK_PREFIX)}
    trunk.load_state_dict(state, strict=True)  # every trunk tensor, nothing else
    step = ckpt.get("global_step")
    at = f" (step {step})" if step is not None else ""
    return (f"model.init_from: trunk weights from {path}{at}; span head initialised fresh, "
            f"attention bidirectional")


def _check_shape(meta: dict[str, Any], ours: GPTConfig, path: Path) -> None:
    diffs = shape_diffs(meta, ours, TRUNK_KEYS, theirs="LM", ours="span config")
    if diffs:
        raise CheckpointError(f"model.init_from: the trunk of {path} does not fit the span "
                              f"model (" + "; ".join(diffs) + "); set those keys in "
                              "llmkit.yaml to the LM's values")
