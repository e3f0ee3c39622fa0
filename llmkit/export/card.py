"""The model card (README.md) of an export: what the model was trained on and how well.

Every number comes from a record made at the time: the prepared cache's data report, the
checkpoint (step), the run's TensorBoard events (losses) and the run's copy of the config.
A number that was not recorded is said to be missing, never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.data.report import DataReport
from llmkit.inference import Trained
from llmkit.metrics.lm import bits_per_token


@dataclass
class TrainingRecord:
    """What the run recorded up to the checkpoint's step."""

    step: int
    tokens_seen: int | None  # LM: steps x sequences per step x block_size
    train_loss: float | None  # the last logged train/loss at or before `step`
    val_loss: float | None  # the last val/loss at or before `step`
    val_bits_per_byte: float | None
    config_text: str | None  # the run's copy of the resolved config


def training_record(trained: Trained, report: DataReport | None) -> TrainingRecord:
    """Gather the record of the run that wrote `trained.path`."""
    run_dir = trained.path.parent.parent  # runs/<name>/version_N/checkpoints/x.ckpt
    scalars = _scalars(run_dir, ("train/loss", "val/loss"), trained.step)
    cfg = trained.cfg
    t = cfg.training
    tokens = None
    world = trained.meta.get("world_size")  # older checkpoints lack it: training.devices
    if world is None and isinstance(t.devices, int):
        world = t.devices * t.num_nodes
    if cfg.project.task == "lm" and t.batch_size and isinstance(world, int):
        tokens = trained.step * t.batch_size * t.grad_accum * world * cfg.model.block_size
    val_loss = scalars.get("val/loss")
    bpb = None
    if val_loss is not None and report is not None and cfg.project.task == "lm":
        per_token = report.val_bytes_per_token
        bpb = bits_per_token(val_loss) / per_token if per_token else None
    config_text = None
    for name in ("config.resolved.yaml", "llmkit.yaml"):
        if (run_dir / name).is_file():
            config_text = (run_dir / name).read_text(encoding="utf-8")
            break
    return TrainingRecord(step=trained.step, tokens_seen=tokens,
                          train_loss=scalars.get("train/loss"), val_loss=val_loss,
                          val_bits_per_byte=bpb, config_text=config_text)


def _scalars(run_dir: Path, tags: tuple[str, ...], step: int) -> dict[str, float]:
    """The last value of each tag logged at or before `step` (finite values only)."""
    if not any(run_dir.glob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    found = set(acc.Tags().get("scalars", []))
    out = {}
    for tag in tags:
        if tag in found:
            values = [e.value for e in acc.Scalars(tag) if e.step <= step]
            if values and math.isfinite(values[-1]):
                out[tag] = float(values[-1])
    return out


def _num(value: Any, fmt: str = "{:,}") -> str:
    return "not recorded" if value is None else fmt.format(value)


def model_card(trained: Trained, report: DataReport | None, record: TrainingRecord,
               hf_class: str | None) -> str:
    """The README.md text."""
    cfg, gpt = trained.cfg, trained.gpt
    name = cfg.project.name
    if hf_class:
        use = (f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
               f"tok = AutoTokenizer.from_pretrained(\"PATH\")\n"
               f"model = AutoModelForCausalLM.from_pretrained(\"PATH\")  # {hf_class}\n"
               f"ids = tok(\"Once upon a time\", return_tensors=\"pt\")  # EOS + the text\n"
               f"out = model.generate(**ids, max_new_tokens=50, do_sample=True)\n"
               f"print(tok.decode(out[0], skip_special_tokens=True))\n```\n\n"
               f"`tok(text)` puts the EOS token before the text, as llmkit does: the model "
               f"was trained on documents joined by EOS. Evaluate with lm-eval-harness: "
               f"`lm_eval --model hf --model_args pretrained=PATH --tasks ...`.\n")
    else:
        use = ("`transformers` has no class for llmkit's span model, so this folder holds "
               "its weights (`model.safetensors`) and shape (`config.json`) for llmkit's "
               "own loader:\n\n```python\nfrom llmkit.export import load_span_model\n\n"
               "exp = load_span_model(\"PATH\")  # exp.model, exp.tokenizer, "
               "exp.max_span_tokens, exp.nospan_threshold\n```\n")
    lines = [
        f"# {name}",
        "",
        f"A {'language' if gpt.causal else 'span-prediction'} model trained with llmkit "
        f"({gpt.n_layer} layers, {gpt.n_head} heads, width {gpt.n_embd}, context "
        f"{gpt.block_size} tokens, vocabulary {gpt.vocab_size}).",
        "",
        "## Use",
        "",
        use,
        "## Data",
        "",
    ]
    if report is None:
        lines.append("The data report was not found (no prepared cache next to the project).")
    else:
        unit = "documents" if report.task == "lm" else "examples"
        lines += [
            f"- {unit}: {report.documents_train:,} train, {report.documents_val:,} validation",
            f"- tokens: {report.tokens_train:,} train, {report.tokens_val:,} validation",
            f"- text: {report.bytes_train:,} bytes train, {report.bytes_val:,} bytes validation",
            f"- vocabulary use: {report.vocab_used:,} of {report.vocab_size:,} ids occur in "
            f"the training data ({report.vocab_use:.1%})",
        ]
    lines += [
        "",
        "## Training",
        "",
        f"- steps: {record.step:,}",
        f"- tokens seen: {_num(record.tokens_seen)}",
        f"- final train loss: {_num(record.train_loss, '{:.4f}')} nats/token",
        f"- final validation loss: {_num(record.val_loss, '{:.4f}')} nats/token",
    ]
    if gpt.causal:
        lines.append(f"- validation bits per byte: {_num(record.val_bits_per_byte, '{:.4f}')}")
    lines += ["", "## Config", ""]
    if record.config_text:
        lines += ["The llmkit config of the run:", "", "```yaml", record.config_text.rstrip(),
                  "```"]
    else:
        lines.append("The run's config copy was not found.")
    return "\n".join(lines) + "\n"
