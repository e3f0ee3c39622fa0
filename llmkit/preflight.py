"""Pre-flight checks: what is likely to go wrong with this model on this data, before training.

Each check turns numbers from the prepared data's report (meta.json, `DataReport.to_dict()`)
and the configured model into one line starting with "warning:", with the numbers that
triggered it and a concrete fix. `llmkit train` prints them before the first step and
`llmkit size` lists them under its table (DESIGN.md, problem 3).
"""

from __future__ import annotations

import math
from typing import Any

from llmkit.config import Config
from llmkit.models import GPTConfig
from llmkit.sizing import (
    TARGET_TOKENS_PER_PARAM,
    USEFUL_EPOCHS,
    format_ratio,
    model_params,
    recommend_preset,
    regularisation_for,
)

# Fewer unique training tokens per non-embedding parameter than the sizing target (5:
# Chinchilla's 20 over 4 epochs, see sizing.py) and the model is likely to memorise.
MIN_TOKENS_PER_PARAM = TARGET_TOKENS_PER_PARAM
# A quarter of the token ids never occurring in the training data means the tokenizer is
# much larger than the data: those rows of the embedding (and of the tied head) never train.
MAX_UNUSED_IDS = 0.25
# ... and whatever the share of ids, untrained rows making a tenth of all the weights is a
# model that is a tenth dead weight (the 52% of DESIGN.md's problem 1 is far past this).
MAX_UNUSED_PARAMS = 0.10
# Validation text that also occurs in training: a few shared lines (headers, licences) are
# normal; beyond 5% the validation loss is measurably optimistic.
MAX_VAL_OVERLAP = 0.05
# Muennighoff et al. 2023: the value of repeated data decays with a half-life of about 15
# epochs; past 16 passes more steps add almost nothing but memorisation.
MAX_EPOCHS = 16
# Special ids per tokenizer kind: pad, bos, eos, and unk for char (see llmkit.tokenizer).
SPECIAL_IDS = {"bpe": 3, "char": 4}
# The smallest vocabulary a byte-level BPE tokenizer can have (3 specials + 256 bytes).
MIN_BPE_VOCAB = 259


def preflight_warnings(cfg: Config, gpt: GPTConfig, report: dict[str, Any]) -> list[str]:
    """Warnings about training `gpt` on the data described by `report`; empty when sound.

    Args:
        cfg: the project config (task, tokenizer kind, training schedule).
        gpt: the configured model shape, with the tokenizer's real vocabulary size.
        report: the data report saved in meta.json by `prepare_data` (`DataReport.to_dict()`).

    Returns:
        One line per problem, each starting with "warning:" (or "note:" for a model that is
        large for its data but whose run is too short to memorise it).

    Example:
        >>> for line in preflight_warnings(cfg, gpt, prepared.meta["report"]):
        ...     log(line)
    """
    task = cfg.project.task
    total, non_emb = model_params(gpt, task)
    checks = (
        _tokens_per_param(cfg, gpt, report, non_emb),
        _vocab_use(cfg, gpt, report, total),
        _overlap(report),
        _epochs(cfg, report),
    )
    return [w if w.startswith("note:") else f"warning: {w}" for w in checks if w]


def _tokens_per_param(cfg: Config, gpt: GPTConfig, report: dict[str, Any],
                      non_emb: int) -> str | None:
    tokens = int(report.get("tokens_train", 0))
    tpp = tokens / non_emb
    if tpp >= MIN_TOKENS_PER_PARAM:
        return None
    ratio = (f"{tokens:,} training tokens for {non_emb:,} non-embedding parameters is "
             f"{format_ratio(tpp)} tokens per parameter (below {MIN_TOKENS_PER_PARAM:g})")
    epochs = _planned_epochs(cfg, report)
    if epochs is not None and epochs <= USEFUL_EPOCHS:
        # Memorising takes many passes: a short run over the data is safe, a long one is not.
        return (f"note: {ratio}; fine for this run ({epochs:.1f} passes over the data), but "
                f"past ~{USEFUL_EPOCHS} passes the model will start to memorise; for longer "
                f"training collect more data or use a smaller preset (`llmkit size`)")
    head = f"{ratio}: the model is likely to memorise its training data"
    needed = math.ceil(MIN_TOKENS_PER_PARAM * non_emb)
    rec = recommend_preset(tokens, gpt.vocab_size, cfg.project.task, bias=gpt.bias,
                           pad_vocab_multiple=gpt.pad_vocab_multiple)
    rec_row = next(r for r in rec.table if r.name == rec.preset)
    if rec_row.non_embedding_params < non_emb:
        fix = (f"use model.size: {rec.preset} ({format_ratio(rec.tokens_per_param)} tokens per "
               f"parameter) or collect ~{needed:,} training tokens for this model")
        if not rec.enough_data:
            fix += (f"; {rec.preset} is below the target too: train it with model.dropout "
                    f"{rec.dropout:g}, training.weight_decay {rec.weight_decay:g} and fewer "
                    f"training.max_steps")
    else:
        dropout, weight_decay = regularisation_for(tpp)
        fix = (f"collect more data (~{needed:,} training tokens for this model); until then "
               f"use model.dropout {dropout:g}, training.weight_decay {weight_decay:g} and "
               f"fewer training.max_steps")
    return f"{head}; {fix} (`llmkit size` compares the presets)"


def _vocab_use(cfg: Config, gpt: GPTConfig, report: dict[str, Any], total: int) -> str | None:
    vocab = int(report.get("vocab_size", gpt.vocab_size))
    used = int(report.get("vocab_used", vocab))
    unused = max(0, vocab - used)
    if vocab <= 0 or unused == 0:
        return None
    id_share = unused / vocab
    # One row per id in the token embedding; the LM head is tied to it, so no second copy.
    param_share = unused * gpt.n_embd / total
    # The special ids (pad, bos, eos; unk for char) exist whatever the data holds, and LM
    # data never contains pad: a tiny alphabet must not trip the check on those alone.
    avoidable = max(0, unused - SPECIAL_IDS[cfg.tokenizer.kind])
    if avoidable / vocab < MAX_UNUSED_IDS and avoidable * gpt.n_embd / total < MAX_UNUSED_PARAMS:
        return None
    if cfg.tokenizer.kind == "char":
        fix = ("the char tokenizer was trained on other text than the training split: run "
               "`llmkit tokenizer` again")
    else:
        fix = (f"set tokenizer.vocab_size: {_suggested_vocab(used)} (about the ids in use), "
               f"or tokenizer.kind: char for small data, and run `llmkit tokenizer`")
    return (f"{unused:,} of {vocab:,} token ids ({id_share:.1%}) never occur in the training "
            f"data: their embedding rows never train and are {unused * gpt.n_embd:,} of "
            f"{total:,} model parameters ({param_share:.1%}); {fix}")


def _suggested_vocab(used: int) -> int:
    """`used` rounded to two significant digits, at least the smallest BPE vocabulary."""
    digits = max(0, len(str(used)) - 2)
    rounded = round(used, -digits) if digits else used
    return max(MIN_BPE_VOCAB, int(rounded))


def _overlap(report: dict[str, Any]) -> str | None:
    if report.get("task") == "span":
        dup = report.get("duplicate_val_texts")
        n_val = int(report.get("documents_val", 0))
        if not dup or not n_val or dup / n_val <= MAX_VAL_OVERLAP:
            return None
        return (f"{dup:,} of {n_val:,} validation examples ({dup / n_val:.1%}) have a text "
                f"that is also in the training data: validation scores will look better "
                f"than the model is; remove the duplicates (dedup) or split by document or "
                f"trace")
    share = report.get("overlap")
    if share is None or share <= MAX_VAL_OVERLAP:
        return None
    checked = int(report.get("overlap_windows", 0))
    return (f"{share:.1%} of validation text ({checked:,} windows checked) also occurs "
            f"verbatim in the training text: validation loss will look better than the "
            f"model is and cannot show memorisation; remove duplicated passages (dedup) or "
            f"split by document (list separate validation files in data.val)")


def _planned_epochs(cfg: Config, report: dict[str, Any]) -> float | None:
    """Passes over the training data that `training.max_steps` makes (None: no data)."""
    per_step, have, _ = _step_size(cfg, report)
    return cfg.training.max_steps * per_step / have if have > 0 else None


def _step_size(cfg: Config, report: dict[str, Any]) -> tuple[int, int, str]:
    """(units per optimizer step, units of training data, unit name)."""
    t = cfg.training
    devices = t.devices if isinstance(t.devices, int) else 1  # "auto": at least one
    per_step = t.batch_size * t.grad_accum * devices * t.num_nodes
    if cfg.project.task == "span":
        have = int(report.get("documents_train", 0))
        unit = "examples"
    else:
        per_step *= cfg.model.block_size
        have = int(report.get("tokens_train", 0))
        unit = "tokens"
    return per_step, have, unit


def _epochs(cfg: Config, report: dict[str, Any]) -> str | None:
    t = cfg.training
    per_step, have, unit = _step_size(cfg, report)
    if have <= 0:
        return None
    epochs = t.max_steps * per_step / have
    if epochs <= MAX_EPOCHS:
        return None
    steps = max(1, math.ceil(USEFUL_EPOCHS * have / per_step))
    return (f"training.max_steps {t.max_steps:,} x {per_step:,} {unit} per step is "
            f"{epochs:.0f} passes over {have:,} training {unit}: past ~{MAX_EPOCHS} epochs "
            f"repeated data adds almost nothing but memorisation; set training.max_steps to "
            f"~{steps:,} ({USEFUL_EPOCHS} epochs) or collect more data")

