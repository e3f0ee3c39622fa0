"""TensorBoard as a user opens it: an overview layout, the run's hyperparameters, no noise.

- `RunLogger` is Lightning's TensorBoardLogger without the constant `epoch` series that
  Lightning adds to every logging call (our runs count steps; epoch stays 0).
- `TensorBoardLayout` writes, when training starts, a custom-scalars layout (TensorBoard's
  own layout summary, the CUSTOM SCALARS tab): train and validation loss on one chart,
  each lens metric with every layer on one chart, the health series grouped the same way;
  and the run's hyperparameters (HPARAMS tab), declaring the metrics whose final values
  the tab shows next to them (read by TensorBoard from the runs' own scalar series, so no
  value is written twice).

The layout and hyperparameters are pure functions of the config (`layout`, `hparams_of`),
testable without a Trainer.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from llmkit.config import Config


class RunLogger(TensorBoardLogger):
    """TensorBoardLogger minus Lightning's constant `epoch` scalar."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            super().log_metrics(metrics, step)


def _lines(*tags: str) -> list[Any]:
    """A custom-scalars multiline chart over tags given as regular expressions."""
    return ["Multiline", list(tags)]


def layout(task: str) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout: category -> chart title -> ["Multiline", tag regexes]."""
    overview = {"train and validation loss": _lines(r"^train/loss$", r"^val/loss$")}
    if task == "span":
        overview["validation span metrics"] = _lines(
            r"^val/span_iou$", r"^val/exact_match$", r"^val/span_f1$")
        overview["validation: examples with and without a span"] = _lines(
            r"^val/has_span_", r"^val/nospan_")
    else:
        overview["validation bits per token"] = _lines(r"^val/bits_per_token$")
        overview["validation perplexity"] = _lines(r"^val/ppl$")
    out: dict[str, dict[str, list[Any]]] = {"1 overview": overview}
    if task == "lm":
        out["2 lens (every layer)"] = {
            "KL(model || layer), bits": _lines(r"^lens/kl_bits/layer_\d+$"),
            "layer cross-entropy, bits": _lines(r"^lens/ce_bits/layer_\d+$"),
            "top-1 agreement with the model": _lines(r"^lens/top1_agree/layer_\d+$"),
        }
    out["3 health (every layer)"] = {
        "activation RMS": _lines(r"^health/act_rms/layer_\d+$"),
        "gradient norm": _lines(r"^health/grad_norm/layer_\d+$"),
    }
    out["4 training"] = {
        "overfitting": _lines(r"^overfit/gap$", r"^overfit/ratio$"),
        "learning rate": _lines(r"^lr-"),
        "throughput (tokens/s)": _lines(r"^throughput/tokens_per_sec$"),
    }
    return out


def hparams_of(cfg: Config, n_params: int) -> dict[str, Any]:
    """The hyperparameters shown in the HPARAMS tab (plain numbers, strings and bools)."""
    m, t = cfg.model, cfg.training
    params: dict[str, Any] = {
        "task": cfg.project.task, "tokenizer.kind": cfg.tokenizer.kind,
        "model.vocab_size": m.vocab_size, "model.n_layer": m.n_layer,
        "model.n_head": m.n_head, "model.n_embd": m.n_embd, "model.block_size": m.block_size,
        "model.dropout": m.dropout, "params": n_params,
        "training.lr": t.lr, "training.batch_size": t.batch_size,
        "training.grad_accum": t.grad_accum, "training.max_steps": t.max_steps,
        "training.warmup_steps": t.warmup_steps, "training.weight_decay": t.weight_decay,
        "training.label_smoothing": t.label_smoothing, "training.precision": t.precision,
        "project.seed": cfg.project.seed,
    }
    return {k: v for k, v in params.items() if v is not None}


def final_metrics(task: str) -> list[str]:
    """The metric tags whose last values the HPARAMS tab shows beside the hyperparameters."""
    common = ["train/loss", "val/loss", "overfit/gap"]
    if task == "span":
        return [*common, "val/span_iou", "val/exact_match", "val/span_f1"]
    return [*common, "val/ppl", "val/bits_per_token"]


class TensorBoardLayout(L.Callback):
    """Write the custom-scalars layout and the hyperparameters once, when fit starts.

    Args:
        cfg: the project config (task, hyperparameters).
        n_params: the model's parameter count, shown with the hyperparameters.

    Example:
        >>> trainer = L.Trainer(callbacks=[TensorBoardLayout(cfg, n_params)],
        ...                     logger=RunLogger("runs"))
    """

    def __init__(self, cfg: Config, n_params: int) -> None:
        self.cfg = cfg
        self.n_params = n_params

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and not any(isinstance(lg, TensorBoardLogger)
                                      for lg in trainer.loggers):
            raise RuntimeError("TensorBoardLayout writes TensorBoard summaries, but the "
                               "Trainer has no TensorBoardLogger")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                self._write(logger)

    def _write(self, logger: TensorBoardLogger) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = logger.experiment
        writer.add_custom_scalars(layout(self.cfg.project.task))
        metrics = dict.fromkeys(final_metrics(self.cfg.project.task), 0.0)  # names only
        exp, ssi, sei = hparams(hparams_of(self.cfg, self.n_params), metrics)
        file_writer = writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)
        writer.flush()
