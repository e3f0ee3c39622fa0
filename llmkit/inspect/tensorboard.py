"""`--tensorboard`: an inspection's per-step series and flags, next to the training curves.

The events go into the newest run's folder (`runs/<name>/version_N`), the folder
TensorBoard already shows for training, under `inspect/` tags with the generation step as
the x axis. Written with TensorBoard's own writer (no Lightning on this path). A second
inspection of the same run adds a second set of points at the same steps; its text entry
(`inspect/report`) says which prompt and time each set belongs to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmkit.inspect.health import layer_label
from llmkit.inspect.inspect_report import health_summary


def write_tensorboard(run_dir: Path, report: dict[str, Any]) -> list[str]:
    """Write the report's series and flags as TensorBoard events into `run_dir`; return
    the scalar tags written."""
    from torch.utils.tensorboard import SummaryWriter

    tags: set[str] = set()
    writer = SummaryWriter(log_dir=str(run_dir))
    try:
        for s in report["steps"]:
            step = s["step"]
            values: dict[str, float | None] = {
                "inspect/entropy_bits": s["entropy_bits"],
                "inspect/surprisal_bits": s["surprisal_bits"],
                "inspect/entropy_share": s["entropy_share"],
                "inspect/nonfinite": float(s["emb_nonfinite"] + sum(s["nonfinite"])
                                           + s["logits_nonfinite"]),
            }
            counts = s["collapsed_heads"]
            if counts is not None:
                values["inspect/collapsed_heads"] = float(sum(counts))
            for i, v in enumerate(s["l2"]):
                values[f"inspect/l2/{layer_label(i)}"] = v
            for tag, v in values.items():
                if v is not None:  # a non-finite value has no point; inspect/nonfinite counts it
                    writer.add_scalar(tag, v, global_step=step)
                    tags.add(tag)
        text = report["text"]
        writer.add_text("inspect/report", (
            f"{report['created_utc']} — checkpoint {report['checkpoint']['path']}\n\n"
            f"    {text['prompt'] + text['generated']}\n\n"
            + "\n".join(f"    {line}" for line in health_summary(report).splitlines())),
            global_step=0)
        for flag in report["health"]["flags"]:
            writer.add_text(f"inspect/flags/{flag['code']}", flag["message"],
                            global_step=flag["where"].get("step") or 0)
        writer.flush()
    finally:
        writer.close()
    return sorted(tags)
