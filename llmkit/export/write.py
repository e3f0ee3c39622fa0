"""A trained checkpoint -> a folder that `transformers` (or, for span models, llmkit's own
loader) reads with no llmkit training code: config, weights, tokenizer, model card.

The folder is built next to its destination and renamed into place at the end, so a
failed export leaves nothing behind and never half of a folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmkit import __version__
from llmkit.checkpoint import check_tokenizer
from llmkit.errors import LlmkitError
from llmkit.export.architectures import choose
from llmkit.export.card import model_card, training_record
from llmkit.export.span import span_config, span_tensors
from llmkit.export.tokenizer_files import write_tokenizer_files
from llmkit.fsutil import atomic_dir, atomic_path, atomic_write_text
from llmkit.inference import Trained
from llmkit.tokenizer import EOS_ID, PAD_ID


@dataclass
class ExportResult:
    """What was written where."""

    out: Path
    files: list[str]
    hf_class: str | None  # e.g. GPT2LMHeadModel; None for a span model (llmkit's loader)

    def summary(self) -> str:
        how = (f"loads with transformers as {self.hf_class}" if self.hf_class
               else "a span model: load it with llmkit.export.load_span_model")
        return f"exported to {self.out} ({how}): {', '.join(sorted(self.files))}"


def export_model(trained: Trained, out: Path, *, force: bool = False) -> ExportResult:
    """Write the export folder `out` for a loaded checkpoint.

    Raises:
        LlmkitError: `out` is a file, or a non-empty folder without `force`.
        VocabMismatchError: the checkpoint's tokenizer is not the project's.
        UnsupportedArchitecture: the model has no exact `transformers` counterpart.
    """
    from safetensors.torch import save_file

    # load_model checked this already; a Trained built or changed elsewhere may not be
    check_tokenizer(trained.meta, trained.tok, trained.path,
                    then="export needs the tokenizer the model was trained with")
    gpt = trained.gpt
    arch = choose(gpt) if gpt.causal else None  # refuse before writing anything
    report = _data_report(trained)
    record = training_record(trained, report)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        what = "a file" if not out.is_dir() else "a folder that is not empty"
        raise LlmkitError(f"--out {out} is {what}; choose another folder or pass --force "
                          f"to replace it")
    with atomic_dir(out, replace=force) as tmp:
        files = write_tokenizer_files(trained.tok, gpt.block_size, tmp)
        if arch is not None:
            tensors = arch.tensors(trained.model.state_dict(), gpt)
            config = {**arch.config(gpt), "torch_dtype": "float32",
                      "llmkit_version": __version__}
            generation = {"bos_token_id": EOS_ID, "eos_token_id": EOS_ID,
                          "pad_token_id": PAD_ID, "max_length": gpt.block_size}
            atomic_write_text(tmp / "generation_config.json",
                              json.dumps(generation, indent=2) + "\n")
            files.append("generation_config.json")
        else:
            span = trained.cfg.span
            tensors = span_tensors(trained.model)
            config = {**span_config(gpt, span.max_span_tokens, span.nospan_threshold),
                      "llmkit_version": __version__}
        with atomic_path(tmp / "model.safetensors") as weights:
            save_file(tensors, str(weights), metadata={"format": "pt"})
        atomic_write_text(tmp / "config.json", json.dumps(config, indent=2) + "\n")
        card = model_card(trained, report, record, arch.hf_class if arch else None)
        atomic_write_text(tmp / "README.md", card)
        files += ["model.safetensors", "config.json", "README.md"]
    return ExportResult(out=out, files=files, hf_class=arch.hf_class if arch else None)


def _data_report(trained: Trained):  # -> DataReport | None
    """The data report of the project's prepared cache, if there is one that fits."""
    from llmkit.data.prepare import load_prepared

    try:
        return load_prepared(trained.cfg, trained.tok).report
    except LlmkitError:
        return None
