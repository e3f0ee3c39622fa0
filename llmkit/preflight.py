"""Pre-flight checks: what is likely to go wrong with this model on this data, before training.

Each check turns numbers from the prepared data's report (meta.json, `DataReport.to_dict()`)
and the configured model into a `Finding` with the numbers that triggered it and a concrete
fix. This is the one place these rules live: `llmkit prepare` and `llmkit train` print the
findings after the data report, `llmkit size` under its table (DESIGN.md, problem 3).
"""

from __future__ import annotations

import math
from typing import Any

from llmkit.config import Config
from llmkit.findings import Finding
from llmkit.models import GPTConfig
from llmkit.sizing import (
    TARGET_TOKENS_PER_PARAM,
    USEFUL_EPOCHS,
    format_ratio,
    model_params,
    recommend_preset,
    regularisation_for,
)
from llmkit.tokenizer.core import MIN_BPE_VOCAB, SPECIAL_IDS

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


def preflight_findings(cfg: Config, gpt: GPTConfig, report: dict[str, Any]) -> list[Finding]:
    """What is likely to go wrong training `gpt` on the data described by `report`.

    Args:
        cfg: the project config (task, tokenizer kind, training schedule).
        gpt: the configured model shape, with the tokenizer's real vocabulary size.
        report: the data report saved in meta.json by `prepare_data` (`DataReport.to_dict()`).

    Returns:
        The findings, empty when sound: warnings, or a note for a model that is large for
        its data but whose run is too short to memorise it.

    Example:
        >>> for finding in preflight_findings(cfg, gpt, prepared.meta["report"]):
        ...     log(finding.format())
    """
    total, non_emb = model_params(gpt, cfg.project.task)
    checks = (
        _tokens_per_param(cfg, gpt, report, non_emb),
        _vocab_use(cfg, gpt, report, total),
        _overlap(report),
        _widened_spans(report),
        _epochs(cfg, report),
    )
    return [f for f in checks if f is not None]


def preflight_warnings(cfg: Config, gpt: GPTConfig, report: dict[str, Any]) -> list[str]:
    """`preflight_findings` as console lines ("warning: ..." or "note: ...")."""
    return [f.format() for f in preflight_findings(cfg, gpt, report)]


def _tokens_per_param(cfg: Config, gpt: GPTConfig, report: dict[str, Any],
                      non_emb: int) -> Finding | None:
    tokens = int(report.get("tokens_train", 0))
    tpp = tokens / non_emb
    if tpp >= MIN_TOKENS_PER_PARAM:
        return None
    numbers = {"tokens_train": tokens, "non_embedding_params": non_emb,
               "tokens_per_param": tpp, "target": MIN_TOKENS_PER_PARAM}
    ratio = (f"{tokens:,} training tokens for {non_emb:,} non-embedding parameters is "
             f"{format_ratio(tpp)} tokens per parameter (below {MIN_TOKENS_PER_PARAM:g})")
    epochs = _planned_epochs(cfg, report)
    if epochs is not None and epochs <= USEFUL_EPOCHS:
        # Memorising takes many passes: a short run over the data is safe, a long one is not.
        return Finding(
            "tokens-per-param", "note",
            f"{ratio}; fine for this run ({epochs:.1f} passes over the data), but past "
            f"~{USEFUL_EPOCHS} passes the model will start to memorise",
            "for longer training collect more data or use a smaller preset (`llmkit size`)",
            numbers)
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
    return Finding("tokens-per-param", "warning", head,
                   f"{fix} (`llmkit size` compares the presets)", numbers)


def _vocab_use(cfg: Config, gpt: GPTConfig, report: dict[str, Any],
               total: int) -> Finding | None:
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
    return Finding(
        "vocab-unused", "warning",
        f"{unused:,} of {vocab:,} token ids ({id_share:.1%}) never occur in the training "
        f"data: their embedding rows never train and are {unused * gpt.n_embd:,} of "
        f"{total:,} model parameters ({param_share:.1%})", fix,
        {"vocab_size": vocab, "unused_ids": unused, "unused_id_share": id_share,
         "unused_param_share": param_share})


def _suggested_vocab(used: int) -> int:
    """`used` rounded to two significant digits, at least the smallest BPE vocabulary."""
    digits = max(0, len(str(used)) - 2)
    rounded = round(used, -digits) if digits else used
    return max(MIN_BPE_VOCAB, int(rounded))


def _overlap(report: dict[str, Any]) -> Finding | None:
    if report.get("task") == "span":
        dup = report.get("duplicate_val_texts")
        n_val = int(report.get("documents_val", 0))
        if not dup or not n_val or dup / n_val <= MAX_VAL_OVERLAP:
            return None
        return Finding(
            "val-duplicates", "warning",
            f"{dup:,} of {n_val:,} validation examples ({dup / n_val:.1%}) have a text or "
            f"context that is also in the training data: validation scores will look better "
            f"than the model is",
            "give examples of one text the same \"group\", or let llmkit split data.train "
            "(data.val: []), which keeps shared contexts on one side",
            {"duplicate_val_texts": dup, "examples_val": n_val, "limit": MAX_VAL_OVERLAP})
    share = report.get("overlap")
    if share is None or share <= MAX_VAL_OVERLAP:
        return None
    checked = int(report.get("overlap_windows", 0))
    return Finding(
        "val-overlap", "warning",
        f"{share:.1%} of validation text ({checked:,} windows checked) also occurs verbatim "
        f"in the training text: validation loss will look better than the model is and "
        f"cannot show memorisation",
        "remove duplicated passages (dedup) or split by document (list separate validation "
        "files in data.val)",
        {"overlap": share, "windows_checked": checked, "limit": MAX_VAL_OVERLAP})


def _widened_spans(report: dict[str, Any]) -> Finding | None:
    n = int(report.get("widened_spans") or 0)
    if not n:
        return None
    return Finding(
        "span-widened", "warning",
        f"{n:,} spans start or end inside a token: the model predicts whole tokens, so "
        f"these can never match exactly",
        "use a char tokenizer, or put spans on word boundaries", {"widened_spans": n})


def _planned_epochs(cfg: Config, report: dict[str, Any]) -> float | None:
    """Passes over the training data that `training.max_steps` makes (None: no data)."""
    per_step, have, _ = _step_size(cfg, report)
    return cfg.training.max_steps * per_step / have if have > 0 else None


def _step_size(cfg: Config, report: dict[str, Any]) -> tuple[int, int, str]:
    """(units per optimizer step, units of training data, unit name)."""
    training = cfg.training
    devices = training.devices if isinstance(training.devices, int) else 1  # "auto": at least one
    per_step = training.batch_size * training.grad_accum * devices * training.num_nodes
    if cfg.project.task == "span":
        have = int(report.get("documents_train", 0))
        unit = "examples"
    else:
        per_step *= cfg.model.block_size
        have = int(report.get("tokens_train", 0))
        unit = "tokens"
    return per_step, have, unit


def _epochs(cfg: Config, report: dict[str, Any]) -> Finding | None:
    training = cfg.training
    per_step, have, unit = _step_size(cfg, report)
    if have <= 0:
        return None
    epochs = training.max_steps * per_step / have
    if epochs <= MAX_EPOCHS:
        return None
    steps = max(1, math.ceil(USEFUL_EPOCHS * have / per_step))
    return Finding(
        "too-many-epochs", "warning",
        f"training.max_steps {training.max_steps:,} x {per_step:,} {unit} per step is {epochs:.0f} "
        f"passes over {have:,} training {unit}: past ~{MAX_EPOCHS} epochs repeated data "
        f"adds almost nothing but memorisation",
        f"set training.max_steps to ~{steps:,} ({USEFUL_EPOCHS} epochs) or collect more data",
        {"epochs": epochs, "max_epochs": MAX_EPOCHS, "suggested_max_steps": steps})

