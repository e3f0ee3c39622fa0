"""`llmkit export`: a real tiny checkpoint -> a folder that transformers loads with the same
ids, logits and greedy text; refusals; atomic writes; span exports with llmkit's loader."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from llmkit.errors import LlmkitError, VocabMismatchError
from llmkit.export import (
    ARCHITECTURES,
    UnsupportedArchitecture,
    choose,
    export_model,
    load_span_model,
    verify_export,
    verify_span_export,
)
from llmkit.inference import load_model
from llmkit.models import GPTConfig
from llmkit.tokenizer import EOS_ID

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# every supported architecture, with the options that change the mapping
LM_PROJECTS = {
    "gpt2_bias_padded": dict(tokenizer="bpe", bias=False, pad_vocab_multiple=64),
    "gpt2_bias_char": dict(tokenizer="char", bias=True),
}
TEXTS = [" leading space", "  two leading spaces", "line one\nline two\n\n", "\ttab\r\n",
         "héllo wörld — naïve café 🙂 日本語", "literal <eos> and <pad><bos> in text",
         "the king and queen", ""]


@pytest.fixture(scope="module", params=sorted(LM_PROJECTS))
def exported_lm(request, trained_project, tmp_path_factory):
    cfg = trained_project(request.param, **LM_PROJECTS[request.param])
    trained = load_model(cfg, log=lambda _: None)
    out = tmp_path_factory.mktemp("out") / "hf"
    result = export_model(trained, out)
    return trained, out, result


def test_transformers_loads_the_export_with_llmkits_logits(exported_lm):
    trained, out, result = exported_lm
    assert result.hf_class == "GPT2LMHeadModel"
    assert sorted(p.name for p in out.iterdir()) == sorted(result.files)
    config = json.loads((out / "config.json").read_text())
    assert config["activation_function"] == "gelu"  # exact erf GELU, not gelu_new
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("transformer.wte.weight").shape[0] == trained.gpt.vocab_size
    assert "lm_head.weight" not in keys  # the tied matrix is written once
    assert "transformer.h.0.attn.c_attn.bias" in keys  # zero biases when trained without

    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(model).__name__ == "GPT2LMHeadModel"
    ours = trained.model.eval()
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, trained.gpt.vocab_size, (3, trained.gpt.block_size), generator=g)
    with torch.no_grad():
        want, _ = ours(idx, all_logits=True)
        got = model(idx).logits
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4
    # the model trained: its logits are far from uniform, so equality is not trivial
    assert want.std().item() > 0.05


def test_verify_reports_the_difference(exported_lm):
    trained, out, _ = exported_lm
    check = verify_export(out, trained)
    assert check.max_abs_diff <= 1e-4 and check.tokens > check.prompts
    assert "same ids" in check.summary()


def test_transformers_tokenizer_gives_llmkits_ids(exported_lm):
    trained, out, _ = exported_lm
    tok = trained.tok
    hf = transformers.AutoTokenizer.from_pretrained(out)
    assert (hf.eos_token_id, hf.bos_token_id, hf.pad_token_id) == (EOS_ID, EOS_ID, tok.pad_id)
    for text in TEXTS:
        ids = tok.encode(text)
        # generate's convention: EOS, then the text (documents are joined by EOS)
        assert hf(text)["input_ids"] == [EOS_ID, *ids], text
        assert hf(text, add_special_tokens=False)["input_ids"] == ids, text
        assert hf.decode(ids) == tok.decode(ids) or tok.kind == "char", text
    # a literal special token's text is ordinary text in both
    assert EOS_ID not in hf("a <eos> b", add_special_tokens=False)["input_ids"]


def test_transformers_greedy_generate_equals_llmkits(exported_lm):
    trained, out, _ = exported_lm
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    for prompt in ["the king", "gold\n"]:
        ids = [EOS_ID, *trained.tok.encode(prompt)]
        n = trained.gpt.block_size - len(ids)  # GPT-2 cannot go past n_positions
        ours = trained.model.generate(torch.tensor([ids]), n, temperature=0, eos_id=EOS_ID)
        theirs = model.generate(**hf_tok(prompt, return_tensors="pt"), max_new_tokens=n,
                                do_sample=False)
        ours_new = ours[0, len(ids):].tolist()
        theirs_new = theirs[0, len(ids):].tolist()
        if EOS_ID in ours_new:  # llmkit pads a finished row with EOS; transformers stops
            ours_new = ours_new[: ours_new.index(EOS_ID) + 1]
        assert theirs_new == ours_new, prompt
        assert len(ours_new) > 0


def test_export_refuses_a_non_empty_folder_without_force(exported_lm, tmp_path):
    trained, _, _ = exported_lm
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(LlmkitError, match="not empty.*--force"):
        export_model(trained, out)
    assert (out / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(LlmkitError, match="is a file"):
        export_model(trained, tmp_path / "file")
    export_model(trained, out, force=True)
    assert not (out / "mine.txt").exists() and (out / "model.safetensors").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_model(trained, empty)  # an empty folder is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "taken"]


def test_a_failed_export_leaves_no_half_folder(exported_lm, tmp_path, monkeypatch):
    trained, _, _ = exported_lm
    import safetensors.torch

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        export_model(trained, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one
    old = tmp_path / "old"
    old.mkdir()
    (old / "a.txt").write_text("previous export")
    with pytest.raises(OSError, match="disk full"):
        export_model(trained, old, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert (old / "a.txt").read_text() == "previous export"


def test_export_refuses_a_checkpoint_of_another_tokenizer(exported_lm, tmp_path):
    trained, _, _ = exported_lm
    trained.meta = {**trained.meta, "tokenizer_hash": "0" * 64}
    try:
        with pytest.raises(VocabMismatchError, match="hash 000000000000"):
            export_model(trained, tmp_path / "out")
    finally:
        trained.meta = {**trained.meta, "tokenizer_hash": trained.tok.hash}
    assert not (tmp_path / "out").exists()


def test_the_model_card_holds_the_run_record(exported_lm, read_events):
    trained, out, _ = exported_lm
    card = (out / "README.md").read_text()
    run_dir = trained.path.parent.parent
    events = read_events(run_dir)
    train_loss = [v for s, v in events.scalars("train/loss") if s <= trained.step][-1]
    val_loss = [v for s, v in events.scalars("val/loss") if s <= trained.step][-1]
    assert f"- steps: {trained.step}" in card
    assert trained.meta["world_size"] == 1  # recorded by the checkpoint
    assert f"- tokens seen: {trained.step * 4 * 32:,}" in card  # steps x batch x context
    assert f"final train loss: {train_loss:.4f}" in card
    assert f"final validation loss: {val_loss:.4f}" in card
    from llmkit.data.prepare import load_prepared
    from llmkit.metrics.lm import bits_per_token

    report = load_prepared(trained.cfg, trained.tok).report
    bpb = bits_per_token(val_loss) / (report.bytes_val / (report.tokens_val - report.documents_val))
    assert f"validation bits per byte: {bpb:.4f}" in card
    assert "vocabulary use:" in card and "```yaml" in card and "n_embd: 16" in card


# --- the mapping table ----------------------------------------------------------------


def test_an_unknown_model_option_is_refused_not_approximated():
    @dataclass(frozen=True)
    class WithRope(GPTConfig):
        rope: bool = True  # an option the GPT-2 mapping does not know

    gpt = WithRope(vocab_size=10, n_layer=1, n_head=1, n_embd=4, block_size=8)
    with pytest.raises(UnsupportedArchitecture, match=r"rope=True is unknown to the gpt2"):
        choose(gpt)
    with pytest.raises(UnsupportedArchitecture, match="bidirectional"):
        choose(GPTConfig(vocab_size=10, n_layer=1, n_head=1, n_embd=4, block_size=8,
                         causal=False))
    assert choose(GPTConfig(vocab_size=10, n_layer=1, n_head=1, n_embd=4, block_size=8,
                            bias=True, pad_vocab_multiple=64)).model_type == "gpt2"


def test_every_architecture_covers_every_model_option():
    from dataclasses import fields

    names = {f.name for f in fields(GPTConfig)}
    for arch in ARCHITECTURES:
        assert set(arch.options) == names, arch.model_type


# --- span models ------------------------------------------------------------------------


def test_span_export_loads_with_llmkits_loader(trained_project, tmp_path):
    cfg = trained_project("span", task="span", tokenizer="char", block_size=64)
    trained = load_model(cfg, log=lambda _: None)
    result = export_model(trained, tmp_path / "span")
    assert result.hf_class is None and "load_span_model" in result.summary()
    config = json.loads((tmp_path / "span" / "config.json").read_text())
    assert config["llmkit_format"] == "span" and "model_type" not in config
    loaded = load_span_model(tmp_path / "span")
    ids = torch.tensor([[1, *trained.tok.encode("the gold crown"), 2]])
    with torch.no_grad():
        want = torch.stack(trained.model(ids))
        got = torch.stack(loaded.model(ids))
    assert torch.allclose(got, want, atol=1e-6)
    assert loaded.max_span_tokens == cfg.span.max_span_tokens
    assert verify_span_export(tmp_path / "span", trained).max_abs_diff <= 1e-6
    card = (tmp_path / "span" / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]  # the card's example runs
    scope: dict = {}
    exec(snippet.replace('"PATH"', repr(str(tmp_path / "span"))), scope)
    assert scope["exp"].max_span_tokens == cfg.span.max_span_tokens
    with pytest.raises(LlmkitError, match="not an llmkit span export"):
        (tmp_path / "span" / "config.json").write_text('{"model_type": "gpt2"}')
        load_span_model(tmp_path / "span")
