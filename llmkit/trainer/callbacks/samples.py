"""Text samples in TensorBoard: LM generations and highlighted span predictions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch

from llmkit.metrics.highlight import (
    GOLD_CLOSE,
    GOLD_OPEN,
    PRED_CLOSE,
    PRED_OPEN,
    code_block,
    render_span_sample,
)
from llmkit.metrics.spans import span_iou
from llmkit.trainer.callbacks.logging import add_text
from llmkit.trainer.callbacks.steps import OptimizerSteps


def evenly_spaced(n_items: int, k: int) -> list[int]:
    """`k` indices spread evenly over `range(n_items)` (all of them when k >= n_items)."""
    if k >= n_items:
        return list(range(n_items))
    return [round(i * (n_items - 1) / max(1, k - 1)) for i in range(k)] if k > 1 else [0]


class LMSamples(L.Callback):
    """Every `every_n_steps` (and at the end), log generations from fixed prompts.

    The prompts are the first `prompt_tokens` tokens of `num_prompts` validation windows
    spread over the validation set, chosen once. Sampling uses its own seeded generator, so
    it neither changes nor depends on the training RNG (an exact `--resume` stays exact).

    Args:
        num_prompts: how many prompts (>= 1).
        decode: turns token ids back into text.
        every_n_steps: interval in optimizer steps (>= 1).
        prompt_tokens: tokens per prompt.
        max_new_tokens: tokens generated per prompt.
        seed: seed of the sampling generator (same samples for the same weights).

    Example:
        >>> cb = LMSamples(3, tok.decode, every_n_steps=200)
    """

    def __init__(self, num_prompts: int, decode: Callable[[list[int]], str],
                 every_n_steps: int, prompt_tokens: int = 8, max_new_tokens: int = 64,
                 seed: int = 0, temperature: float = 0.8, top_k: int | None = 40) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if num_prompts < 1 or prompt_tokens < 1:
            raise ValueError(f"need num_prompts >= 1 and prompt_tokens >= 1, got "
                             f"{num_prompts} and {prompt_tokens}")
        self.num_prompts = num_prompts
        self.prompt_tokens = prompt_tokens
        self.prompts: list[list[int]] | None = None
        self.decode = decode
        self.every_n_steps = every_n_steps
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.temperature = temperature
        self.top_k = top_k
        self._logged_step = -1
        self._steps = OptimizerSteps()
        self.last_text: str | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._steps.batch_started(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._steps.stepped(trainer):
            return  # a micro-batch of a gradient accumulation: no optimizer step yet
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step != self._logged_step:
            self._sample(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self._logged_step:
            self._sample(trainer, pl_module)

    def _pick_prompts(self, trainer: L.Trainer) -> list[list[int]]:
        val_set = trainer.datamodule.val_set
        picks = evenly_spaced(len(val_set), self.num_prompts)
        return [val_set[i][0][: self.prompt_tokens].tolist() for i in picks]

    def _sample(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logged_step = trainer.global_step
        if self.prompts is None:
            self.prompts = self._pick_prompts(trainer)
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        # One batch for all prompts: they have the same length (validation windows all
        # hold block_size tokens).
        idx = torch.tensor(self.prompts, dtype=torch.long, device=pl_module.device)  # (P, t)
        out = pl_module.model.generate(idx, self.max_new_tokens, temperature=self.temperature,
                                       top_k=self.top_k, generator=gen)
        parts = []
        for prompt, row in zip(self.prompts, out.tolist(), strict=True):
            new_text = self.decode(row[len(prompt):])
            parts.append(code_block(self.decode(prompt) + " ⟶ " + new_text))
        self.last_text = "\n\n".join(parts)
        add_text(trainer, "samples/generated", self.last_text)


class SpanSamples(L.Callback):
    """After validation, log fixed validation examples with gold and predicted spans.

    Logged after the first validation, then after the first validation at least
    `every_n_steps` optimizer steps after the last logging.

    The gold span is marked `[[...]]` and the prediction `{{...}}`, at character offsets
    that come from the tokenizer's offset mapping (see SpanModule), so a BOS token cannot
    shift them. Reads `pl_module.val_predictions` and `trainer.datamodule.val_examples`.

    Args:
        num_samples: how many validation examples to show (>= 1); chosen once, spread over
            the examples that validation predicts (all of them, or `span.val_examples`),
            half with a gold span and half without where both exist. The text shown is
            the context the spans point into.
        every_n_steps: least optimizer steps between two loggings (>= 1).

    Example:
        >>> cb = SpanSamples(num_samples=4, every_n_steps=200)
    """

    def __init__(self, num_samples: int, every_n_steps: int = 1) -> None:
        if num_samples < 1 or every_n_steps < 1:
            raise ValueError(f"need num_samples >= 1 and every_n_steps >= 1, got "
                             f"{num_samples} and {every_n_steps}")
        self.num_samples = num_samples
        self.every_n_steps = every_n_steps
        self.indices: list[int] | None = None
        self.last_text: str | None = None
        self._logged_step: int | None = None

    def _pick(self, examples: Sequence, seen: Sequence[int]) -> list[int]:
        with_span = [i for i in seen if examples[i]["char_span"]]
        without = [i for i in seen if not examples[i]["char_span"]]
        n_without = min(len(without), self.num_samples // 2)
        n_with = min(len(with_span), self.num_samples - n_without)
        picks = ([with_span[i] for i in evenly_spaced(len(with_span), n_with)]
                 + [without[i] for i in evenly_spaced(len(without), n_without)])
        return sorted(picks)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        step = trainer.global_step
        if self._logged_step is not None and step - self._logged_step < self.every_n_steps:
            return
        self._logged_step = step
        examples = trainer.datamodule.val_examples
        predictions = pl_module.val_predictions
        if self.indices is None:
            self.indices = self._pick(examples, sorted(predictions))
        legend = (f"gold `{GOLD_OPEN} {GOLD_CLOSE}`, predicted `{PRED_OPEN} {PRED_CLOSE}` "
                  f"(character offsets, exclusive end)")
        parts = [legend]
        for i in self.indices:
            if i not in predictions:
                continue  # this rank did not see it (DDP)
            (ps, pe), score = predictions[i]
            ex = examples[i]
            gold = tuple(ex["char_span"]) if ex["char_span"] else None
            gs, ge = gold or (0, 0)
            pred = (ps, pe) if pe > ps else None
            iou = span_iou(ps, pe, gs, ge)
            parts.append(render_span_sample(ex["text"], gold, pred, iou, score))
        self.last_text = "\n\n".join(parts)
        add_text(trainer, "samples/spans", self.last_text)
