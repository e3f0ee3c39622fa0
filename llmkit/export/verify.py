"""`llmkit export --verify`: load the export with `transformers` and compare with llmkit.

On CPU, in float32: the same prompts through both tokenizers must give the same ids, and
the same ids through both models the same logits (max absolute difference at most
`TOLERANCE`). `transformers` is optional (`pip install 'llmkit[hf]'`); only this check and
the tests need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from llmkit.errors import LlmkitError
from llmkit.inference import Trained
from llmkit.tokenizer import EOS_ID

TOLERANCE = 1e-4
PROMPTS = ("", "The ", "Hello, world!\n", "  two spaces,\ta tab,\nnew lines\n\n",
           "héllo — 日本語 🙂")


class VerifyError(LlmkitError):
    """The export does not reproduce llmkit's model."""


@dataclass
class Verification:
    """What `verify_export` compared."""

    prompts: int
    tokens: int
    max_abs_diff: float

    def summary(self) -> str:
        return (f"verified with transformers: {self.prompts} prompts, {self.tokens} tokens, "
                f"same ids, max |logit difference| {self.max_abs_diff:.2e} (<= {TOLERANCE:g})")


def load_transformers():  # -> the transformers module
    """Import transformers quietly, or say how to install it."""
    try:
        import transformers
    except ImportError:
        raise LlmkitError("--verify needs the transformers package: pip install "
                          "'llmkit[hf]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


@torch.no_grad()
def verify_export(folder: Path, trained: Trained, prompts: tuple[str, ...] = PROMPTS
                  ) -> Verification:
    """Compare the exported LM in `folder` with `trained.model` on `prompts`.

    Raises:
        VerifyError: ids or logits differ (the message names the prompt and the numbers).
    """
    transformers = load_transformers()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = trained.model.float().cpu().eval()
    block = trained.gpt.block_size
    worst, tokens = 0.0, 0
    for prompt in prompts:
        ours = [EOS_ID, *trained.tok.encode(prompt)][-block:]
        theirs = hf_tok(prompt)["input_ids"][-block:]
        if ours != theirs:
            raise VerifyError(f"{folder}: the transformers tokenizer gives other ids for "
                              f"{prompt!r}: {theirs[:12]} vs llmkit {ours[:12]}")
        idx = torch.tensor([ours])
        want, _ = model(idx, all_logits=True)  # (1, T, V)
        got = hf_model(idx).logits  # (1, T, V)
        if got.shape != want.shape:
            raise VerifyError(f"{folder}: transformers gives logits {tuple(got.shape)}, "
                              f"llmkit {tuple(want.shape)}")
        worst = max(worst, float((got - want).abs().max()))
        tokens += len(ours)
    if not worst <= TOLERANCE:  # also catches NaN
        raise VerifyError(f"{folder}: logits differ from llmkit's by up to {worst:.3g} "
                          f"(tolerance {TOLERANCE:g}); the export is not the same model")
    return Verification(prompts=len(prompts), tokens=tokens, max_abs_diff=worst)


@torch.no_grad()
def verify_span_export(folder: Path, trained: Trained, prompts: tuple[str, ...] = PROMPTS
                       ) -> Verification:
    """The span export read back with `load_span_model` gives llmkit's start/end logits."""
    from llmkit.data.windows import context_room, cut_window
    from llmkit.export.span import load_span_model

    loaded = load_span_model(folder)
    model = trained.model.float().cpu().eval()
    room = context_room(trained.gpt.block_size, 0)
    worst, tokens = 0.0, 0
    for prompt in prompts:
        ids, offsets = trained.tok.encode_offsets(prompt)
        theirs, _ = loaded.tokenizer.encode_offsets(prompt)
        if list(ids) != list(theirs):
            raise VerifyError(f"{folder}: the exported tokenizer gives other ids for {prompt!r}")
        # The first window of the text, built as training and predict build it.
        ids = cut_window(0, [], ids, offsets, None, 0, room).ids
        idx = torch.tensor([ids])
        want = torch.stack(model(idx))
        got = torch.stack(loaded.model(idx))
        worst = max(worst, float((got - want).abs().max()))
        tokens += len(ids)
    if not prompts or not worst <= TOLERANCE:
        raise VerifyError(f"{folder}: span logits differ from llmkit's by up to {worst:.3g}"
                          if prompts else f"{folder}: no prompts to compare")
    return Verification(prompts=len(prompts), tokens=tokens, max_abs_diff=worst)
