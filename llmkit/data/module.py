"""`LlmkitDataModule`: the prepared cache served as batches, for both tasks.

The cache must exist (`llmkit prepare`, or `llmkit train`, which prepares first); it is
checked against the tokenizer when opened. Training batches of both tasks are endless,
sharded by rank and reproducible from `(seed, batch index)`; the module's `state_dict`
records how many batches were trained on, so a run resumed from a checkpoint continues
with exactly the batches it would have seen (Lightning saves and restores DataModule state itself).

The Trainer must count in steps, not epochs (the stream has no end):
`max_steps`, `val_check_interval` as a number of batches and `check_val_every_n_epoch=None`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from llmkit.config import Config
from llmkit.data.cache import PreparedData, load_prepared
from llmkit.data.lm import LMTrainWindows, LMValWindows
from llmkit.data.spans import (
    SpanBatchStream,
    SpanDataset,
    SpanExample,
    collate_spans,
    collate_val_spans,
)
from llmkit.data.validation import validation_set
from llmkit.tokenizer import Tokenizer


class LlmkitDataModule(L.LightningDataModule):
    """Train and validation DataLoaders over the project's prepared data.

    Args:
        cfg: the project config (task, block size, batch size, workers, seed).
        tok: the project's tokenizer; the cache must have been encoded with it.

    Example:
        >>> dm = LlmkitDataModule(cfg, tok)
        >>> trainer.fit(model, datamodule=dm)
    """

    def __init__(self, cfg: Config, tok: Tokenizer) -> None:
        super().__init__()
        self.cfg, self.tok = cfg, tok
        self.prepared: PreparedData | None = None
        self.train_set: SpanDataset | None = None  # span only; LM windows are made per loader
        self.val_set: LMValWindows | SpanDataset | None = None
        self._start_batch = 0  # train batches already seen (restored from a checkpoint)

    def setup(self, stage: str | None = None) -> None:
        """Open the cache (once).

        Raises:
            DataError: there is no cache, it holds too little data, or it is for another task.
            VocabMismatchError: the cache was encoded with another tokenizer.
        """
        if self.prepared is not None:
            return
        self.prepared = load_prepared(self.cfg, self.tok)
        vocab = self.tok.vocab_size
        self.val_set = validation_set(self.cfg, self.prepared, vocab)
        if self.cfg.project.task == "lm":
            # Once here: a cache too short for one window, or with an id out of range, fails
            # at setup rather than in a DataLoader worker.
            self._lm_train(start_batch=0, vocab_size=vocab)
        else:
            block, stride = self.cfg.model.block_size, self.cfg.data.window_stride
            self.train_set = SpanDataset(self.prepared.train, block, stride, vocab_size=vocab)

    @property
    def _batch_size(self) -> int:
        assert self.cfg.training.batch_size is not None  # filled from the size preset
        return self.cfg.training.batch_size

    def _rank(self) -> tuple[int, int]:
        trainer = self._trainer_or_none()
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _trainer_or_none(self) -> Any:
        return getattr(self, "trainer", None)

    def _lm_train(self, start_batch: int, vocab_size: int | None = None) -> LMTrainWindows:
        assert self.prepared is not None
        rank, world = self._rank()
        return LMTrainWindows(self.prepared.train, self.cfg.model.block_size, self._batch_size,
                              self.cfg.project.seed, start_batch=start_batch, rank=rank,
                              world_size=world, vocab_size=vocab_size)

    def _loader_args(self) -> dict[str, Any]:
        trainer = self._trainer_or_none()
        if trainer is not None:
            on_cuda = trainer.strategy.root_device.type == "cuda"
        else:
            on_cuda = torch.cuda.is_available()
        workers = self.cfg.training.num_workers
        # A DataLoader without a generator draws its worker seed from the global torch RNG
        # each time it is iterated: every validation, and the fresh train iterator of a
        # resumed run, would shift the dropout stream, and `--resume` would not be exact.
        generator = torch.Generator().manual_seed(self.cfg.project.seed)
        return {"num_workers": workers, "pin_memory": on_cuda,
                "persistent_workers": workers > 0, "generator": generator}

    def train_dataloader(self) -> DataLoader:
        """LM: endless `(x, y)` batches; span: endless shuffled padded batches."""
        self.setup()
        if self.cfg.project.task == "lm":
            # The windows make whole batches themselves (see LMTrainWindows).
            return DataLoader(self._lm_train(self._start_batch), batch_size=None,
                              **self._loader_args())
        # An endless, rank-sharded stream of shuffled batches that resumes exactly.
        assert self.train_set is not None
        rank, world = self._rank()
        stream = SpanBatchStream(len(self.train_set), self._batch_size, self.cfg.project.seed,
                                 start_batch=self._start_batch, rank=rank, world_size=world)
        return DataLoader(self.train_set, batch_sampler=stream,
                          collate_fn=partial(collate_spans, pad_id=self.tok.pad_id),
                          **self._loader_args())

    def val_dataloader(self) -> DataLoader:
        """The same batches at every validation."""
        self.setup()
        # Span: the batch also carries its windows, for decoding spans (collate_val_spans).
        collate = (partial(collate_val_spans, pad_id=self.tok.pad_id)
                   if self.cfg.project.task == "span" else None)
        return DataLoader(self.val_set, batch_size=self._batch_size, shuffle=False,
                          collate_fn=collate, **self._loader_args())

    @property
    def val_examples(self) -> list[SpanExample]:
        """Span validation examples by the `example` of a batch (text, char_span, offsets)."""
        self.setup()
        if not isinstance(self.val_set, SpanDataset):
            raise AttributeError("val_examples exists only for task span")
        return self.val_set.examples

    def validation_summary(self) -> str:
        """How much span validation scores, in one line (examples and windows)."""
        self.setup()
        assert isinstance(self.val_set, SpanDataset)
        n, total = len(self.val_set.examples), self.val_set.total_examples
        which = (f"all {n:,} validation examples" if n == total else
                 f"{n:,} of {total:,} validation examples (span.val_examples)")
        return f"validation scores {which} ({len(self.val_set):,} windows)"

    def train_batches_seen(self) -> int:
        """Training batches this rank has trained on (what a resume starts after)."""
        trainer = self._trainer_or_none()
        if trainer is None:
            return self._start_batch
        # `processed` counts batches whose training step finished; a checkpoint written in
        # on_train_batch_end (or after validation) has processed the current batch, and
        # Lightning resumes after it too.
        return int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints by Lightning: where the training stream stands."""
        return {"train_batches": self.train_batches_seen(), "seed": self.cfg.project.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restored by Lightning before the train DataLoader is built on resume."""
        # A different seed means a different stream: starting it part-way would be no
        # better than starting it at 0, so keep the position only for the same seed.
        if state_dict.get("seed") == self.cfg.project.seed:
            self._start_batch = int(state_dict.get("train_batches", 0))
