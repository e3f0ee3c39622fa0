"""LM windows, span batches and the DataModule: shapes, determinism, exact resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from llmkit.data import (
    LlmkitDataModule,
    LMTrainWindows,
    LMValWindows,
    SpanDataset,
    collate_spans,
    prepare_data,
)
from llmkit.errors import DataError, VocabMismatchError
from llmkit.tokenizer import BOS_ID, EOS_ID, PAD_ID


def quiet(msg: str) -> None:
    pass


@pytest.fixture
def ids_file(tmp_path):
    path = tmp_path / "train.npy"
    np.save(path, np.arange(1000, dtype=np.uint16) % 500)
    return path


def take(ds, n):
    return list(itertools.islice(iter(ds), n))


def test_train_windows_shapes_and_targets(ids_file):
    ids = np.load(ids_file)
    ds = LMTrainWindows(ids_file, block_size=16, batch_size=4, seed=1)
    x, y = next(iter(ds))
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row, start in zip(x, ds.starts(np.arange(4)), strict=True):
        assert row.tolist() == ids[start:start + 16].tolist()
    assert ds.starts(np.arange(10_000)).max() <= len(ids) - 17


def test_train_windows_are_a_function_of_seed_and_index(ids_file):
    a = take(LMTrainWindows(ids_file, 16, 4, seed=1), 6)
    b = take(LMTrainWindows(ids_file, 16, 4, seed=1), 6)
    c = take(LMTrainWindows(ids_file, 16, 4, seed=2), 6)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c, strict=True))
    assert not torch.equal(a[0][0], a[1][0])  # batches differ from one another


def test_resume_continues_with_the_same_windows(ids_file):
    straight = take(LMTrainWindows(ids_file, 16, 4, seed=5), 10)
    resumed = take(LMTrainWindows(ids_file, 16, 4, seed=5, start_batch=6), 4)
    for p, q in zip(straight[6:], resumed, strict=True):
        assert torch.equal(p[0], q[0]) and torch.equal(p[1], q[1])


def test_workers_keep_the_order(ids_file):
    ds = LMTrainWindows(ids_file, 16, 4, seed=5)
    alone = take(DataLoader(ds, batch_size=None), 5)
    shared = take(DataLoader(ds, batch_size=None, num_workers=2), 5)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(alone, shared, strict=True))


def test_ranks_take_disjoint_batches(ids_file):
    r0 = LMTrainWindows(ids_file, 16, 4, seed=5, rank=0, world_size=2)
    r1 = LMTrainWindows(ids_file, 16, 4, seed=5, rank=1, world_size=2)
    single = LMTrainWindows(ids_file, 16, 4, seed=5)
    # Rank r's batch j is global batch 2j + r: together they are the single-process stream.
    assert torch.equal(r0.batch(3)[0], single.batch(6)[0])
    assert torch.equal(r1.batch(3)[0], single.batch(7)[0])


def test_too_short_arrays_are_data_errors(tmp_path):
    path = tmp_path / "val.npy"
    np.save(path, np.arange(16, dtype=np.uint16))
    with pytest.raises(DataError, match=r"holds 16 training tokens, fewer than block_size "
                                        r"\+ 1 = 17 .*model\.block_size"):
        LMTrainWindows(path, 16, 4, seed=0)
    with pytest.raises(DataError, match=r"holds 16 validation tokens, fewer than block_size "
                                        r"\+ 1 = 17 .*data\.val_fraction"):
        LMValWindows(path, 16, n_windows=4)


def test_out_of_range_ids_are_caught_on_load(ids_file):
    with pytest.raises(Exception, match=r"token id 499 .* vocabulary of 100 tokens"):
        LMTrainWindows(ids_file, 16, 4, seed=0, vocab_size=100)


def test_val_windows_are_fixed_and_do_not_overlap(ids_file):
    ds = LMValWindows(ids_file, block_size=16, n_windows=10)
    again = LMValWindows(ids_file, block_size=16, n_windows=10)
    assert ds.starts.tolist() == again.starts.tolist()
    assert len(ds) == 10 and ds.starts[0] == 0 and ds.starts[-1] == 1000 - 17
    assert (np.diff(ds.starts) >= 16).all()
    x, y = ds[3]
    assert x.shape == y.shape == (16,) and x.dtype == torch.int64
    capped = LMValWindows(ids_file, block_size=16, n_windows=10_000)
    assert len(capped) == 999 // 16 and (np.diff(capped.starts) >= 16).all()


def test_span_batches(tiny_project, project_tokenizer):
    cfg = tiny_project("span")
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    ds = SpanDataset(prepared.train, cfg.model.block_size, vocab_size=tok.vocab_size)
    items = [ds[i] for i in (0, 1, 2)]
    batch = collate_spans(items, pad_id=PAD_ID)
    longest = max(len(w.ids) for _, w in items)
    assert batch["ids"].shape == batch["mask"].shape == batch["context"].shape == (3, longest)
    assert batch["ids"].dtype == torch.int64 and batch["mask"].dtype == torch.bool
    assert batch["index"].tolist() == [0, 1, 2]
    for row, (_, w) in enumerate(items):
        n = len(w.ids)
        assert batch["ids"][row, :n].tolist() == w.ids
        assert (batch["ids"][row, n:] == PAD_ID).all()
        assert batch["mask"][row].sum() == n
        # The sample texts fit one window: context is everything between BOS and EOS.
        assert batch["context"][row].nonzero().flatten().tolist() == list(range(1, n - 1))
        assert (batch["start"][row].item(), batch["end"][row].item()) == w.span
        assert batch["example"][row].item() == w.example


def test_span_val_batches_carry_their_windows_through_the_device_transfer(
        tiny_project, project_tokenizer):
    from lightning.fabric.utilities.apply_func import move_data_to_device

    cfg = tiny_project("span")
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    dm = LlmkitDataModule(cfg, tok)
    dm.setup("fit")
    assert "windows" not in next(iter(dm.train_dataloader()))  # workers pickle no windows
    seen = 0
    for batch in dm.val_dataloader():
        # What Lightning does to every batch before the step: it must leave the windows be.
        batch = move_data_to_device(batch, "cpu")
        rows = batch["windows"]
        n = len(rows.indices)
        assert rows.indices == batch["index"].tolist() == list(range(seen, seen + n))
        assert rows.windows == [dm.val_set[i][1] for i in rows.indices]
        seen += n
    assert seen == len(dm.val_set)


def test_datamodule_needs_a_prepared_cache(tiny_project, project_tokenizer):
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    with pytest.raises(DataError, match="run `llmkit prepare`"):
        LlmkitDataModule(cfg, tok).setup("fit")
    prepare_data(cfg, tok, progress=False, log=quiet)
    cfg.path("data/more.txt").write_text("zx\n")
    other = project_tokenizer(cfg)
    with pytest.raises(VocabMismatchError):
        LlmkitDataModule(cfg, other).setup("fit")


@pytest.mark.parametrize("task", ["lm", "span"])
def test_datamodule_batches(task, tiny_project, project_tokenizer):
    cfg = tiny_project(task)
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    dm = LlmkitDataModule(cfg, tok)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    val = next(iter(dm.val_dataloader()))
    if task == "lm":
        assert train[0].shape == (4, 32) and val[0].shape[1] == 32
    else:
        assert set(train) == {"ids", "mask", "context", "start", "end", "index", "example",
                              "n_tokens"}
        assert train["n_tokens"] == int(train["mask"].sum())
        assert train["ids"].shape[0] == 4 and val["ids"].shape[0] <= 4
        ex = dm.val_examples[int(val["example"][0])]
        assert ex["text"] == ex.text and ex["offsets"] == ex.offsets
        assert val["ids"][0, : len(ex.ids) + 2].tolist() == [BOS_ID, *ex.ids, EOS_ID]


def test_datamodule_state_resumes_the_stream(tiny_project, project_tokenizer):
    cfg = tiny_project(files={"data/train.txt": "\n\n".join(f"doc {i} " + "abcdefgh" * 12
                                                          for i in range(8))})
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    dm = LlmkitDataModule(cfg, tok)
    straight = take(dm.train_dataloader(), 5)
    resumed_dm = LlmkitDataModule(cfg, tok)
    resumed_dm.load_state_dict({"train_batches": 3, "seed": cfg.project.seed})
    assert resumed_dm.state_dict()["train_batches"] == 3
    resumed = take(resumed_dm.train_dataloader(), 2)
    assert torch.equal(straight[3][0], resumed[0][0])
    assert torch.equal(straight[4][0], resumed[1][0])


@pytest.mark.filterwarnings("ignore")  # Lightning's hints about this deliberately bare setup
def test_lightning_resume_sees_the_batches_of_an_uninterrupted_run(tiny_project,
                                                                   project_tokenizer, tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[list[int]] = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch[0][:, 0].tolist())
            return (self.w * batch[0].float().mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    def fit(max_steps, ckpt_path=None, callbacks=()):
        model = Tiny()
        trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, callbacks=list(callbacks),
                            enable_checkpointing=bool(callbacks),
                            default_root_dir=tmp_path)
        trainer.fit(model, datamodule=LlmkitDataModule(cfg, tok), ckpt_path=ckpt_path)
        return model.seen

    cfg = tiny_project(config={"training": {"grad_accum": 1}})
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    every3 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1,
                             filename="{step}")
    straight = fit(5, callbacks=[every3])
    resumed = fit(5, ckpt_path=str(tmp_path / "ckpt" / "step=3.ckpt"))
    assert resumed == straight[3:]


def test_span_batch_stream_covers_each_epoch_and_resumes_exactly() -> None:
    from llmkit.data.spans import SpanBatchStream

    n, b = 10, 4
    stream = iter(SpanBatchStream(n, b, seed=3))
    batches = [next(stream) for _ in range(10)]  # 40 indices: 4 epochs of 10
    flat = [i for batch in batches for i in batch]
    for epoch in range(4):
        assert sorted(flat[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert flat[:n] != flat[n:2 * n]  # a new order each epoch
    # Same seed, same stream; resuming at batch 6 continues it exactly.
    again = iter(SpanBatchStream(n, b, seed=3, start_batch=6))
    assert [next(again) for _ in range(4)] == batches[6:]
    assert [next(iter(SpanBatchStream(n, b, seed=4)))] != batches[:1]


def test_span_batch_stream_gives_each_rank_its_own_batches() -> None:
    from llmkit.data.spans import SpanBatchStream

    single = iter(SpanBatchStream(12, 3, seed=0))
    r0 = iter(SpanBatchStream(12, 3, seed=0, rank=0, world_size=2))
    r1 = iter(SpanBatchStream(12, 3, seed=0, rank=1, world_size=2))
    global_batches = [next(single) for _ in range(8)]
    assert [next(r0) for _ in range(4)] == global_batches[0::2]
    assert [next(r1) for _ in range(4)] == global_batches[1::2]
