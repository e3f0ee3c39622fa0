"""The `llmkit` command line.

This is the only place that catches `LlmkitError`: it prints the message in one line and
exits 1. Heavy modules (torch, lightning) are imported inside the commands that need them,
so that `llmkit --help` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from llmkit import __version__
from llmkit.errors import LlmkitError


class _Group(click.Group):
    """A click group that turns LlmkitError into one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmkitError as e:
            message = " ".join(str(e).split())  # one line, whatever the message holds
            raise click.ClickException(message) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="llmkit")
@click.option("-C", "project_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Run as if started in DIR (the project folder or below it).")
@click.pass_context
def cli(ctx: click.Context, project_dir: Path | None) -> None:
    """Train your own language or span-prediction model from your own data.

    \b
    Start with:  llmkit new myproj && cd myproj && llmkit train
    Watch with:  tensorboard --logdir runs
    """
    ctx.obj = {"start": project_dir}


def _root(ctx: click.Context) -> Path:
    from llmkit.config import find_project

    start = ctx.obj.get("start") if ctx.obj else None
    if start is not None and not Path(start).is_dir():
        raise LlmkitError(f"-C {start}: no such folder")
    return find_project(start)


def _config(ctx: click.Context, overrides: tuple[str, ...] = ()):  # -> Config
    from llmkit.config import load_config

    return load_config(_root(ctx), list(overrides))


_override = click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
                         help="Override a config key, e.g. -o training.lr=3e-4 (repeatable).")


def _report_outputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """--checkpoint, --json and --html: the options `lens` and `inspect` share."""
    for option in reversed((
        click.option("--checkpoint", type=click.Path(path_type=Path), default=None),
        click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
                     help="Write the versioned report here."),
        click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
                     help="Write a self-contained HTML page here."),
    )):
        command = option(command)
    return command


def _given(ctx: click.Context, flags: dict[str, Any]) -> frozenset[str]:
    """The names among `flags` that the user set on the command line (not defaults)."""
    return frozenset(name for name in flags
                     if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT)


@cli.command()
@click.argument("name")
@click.option("--task", type=click.Choice(["lm", "span"]), default="lm", show_default=True,
              help="lm: causal language model; span: predict a character span of the text.")
@click.option("--size", type=click.Choice(["auto", "tiny", "small", "base"]), default="auto",
              show_default=True, help="Model size preset; auto picks one that fits the data.")
@click.option("--data", "data", type=click.Path(path_type=Path), multiple=True,
              help="Your data (a file or folder) instead of the sample data; repeat it for "
                   "several (files named val*/dev* become validation data).")
@click.option("--link-data", is_flag=True, help="Symlink --data instead of copying it.")
@click.option("--force", is_flag=True, help="Write into an existing non-empty folder.")
@click.pass_context
def new(ctx: click.Context, name: str, task: str, size: str, data: tuple[Path, ...],
        link_data: bool, force: bool) -> None:
    """Create a project NAME that trains out of the box on its sample data."""
    from llmkit.scaffold import create_project

    parent = Path(ctx.obj.get("start") or Path.cwd())
    result = create_project(name, parent, task=task, size=size, data=list(data), force=force,
                            link_data=link_data)
    click.echo(result.summary())


@cli.command()
@click.option("--vocab-size", type=int, default=None,
              help="Vocabulary size to ask of the trainer (default: tokenizer.vocab_size).")
@click.pass_context
def tokenizer(ctx: click.Context, vocab_size: int | None) -> None:
    """Train the tokenizer on the project's data and sync model.vocab_size."""
    overrides = (f"tokenizer.vocab_size={vocab_size}",) if vocab_size is not None else ()
    from llmkit.commands import tokenizer as command

    command.run(_config(ctx, overrides), echo=click.echo)


@cli.command()
@click.option("--force", is_flag=True, help="Re-encode even when the cache is fresh.")
@_override
@click.pass_context
def prepare(ctx: click.Context, force: bool, overrides: tuple[str, ...]) -> None:
    """Validate and encode the data into the cache; print a data report."""
    cfg = _config(ctx, overrides)
    from llmkit.commands import prepare as command

    command.run(cfg, force=force, echo=click.echo)


@cli.command()
@_override
@click.pass_context
def size(ctx: click.Context, overrides: tuple[str, ...]) -> None:
    """Data statistics and the size preset that fits them."""
    cfg = _config(ctx, overrides)
    from llmkit.commands import size as command

    command.run(cfg, echo=click.echo)


@cli.command()
@click.option("--resume", is_flag=True, help="Continue the last run from its last checkpoint.")
@click.option("--max-steps", type=int, default=None, help="Override training.max_steps.")
@_override
@click.pass_context
def train(ctx: click.Context, resume: bool, max_steps: int | None,
          overrides: tuple[str, ...]) -> None:
    """Train the model (trains the tokenizer and prepares the data first when needed)."""
    if max_steps is not None:
        overrides = (*overrides, f"training.max_steps={max_steps}")
    root = _root(ctx)
    _config(ctx, overrides)  # config errors before the slow imports
    from llmkit.commands import train as command

    command.run(root, list(overrides), resume=resume, echo=click.echo)


_device = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                       show_default=True,
                       help="Where the model runs; auto: the GPU when there is one.")


@cli.command(name="eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint to evaluate (default: the best of the latest run).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_device
@_override
@click.pass_context
def eval_(ctx: click.Context, checkpoint: Path | None, as_json: bool, device: str,
          overrides: tuple[str, ...]) -> None:
    """Validation metrics of a checkpoint."""
    cfg = _config(ctx, overrides)
    from llmkit.commands import evaluate as command

    command.run(cfg, checkpoint, as_json=as_json, device=device, echo=click.echo)


@cli.command()
@click.option("--prompt", required=True, help="Text to continue.")
@click.option("--max-new-tokens", type=int, default=100, show_default=True)
@click.option("--temperature", type=float, default=0.8, show_default=True,
              help="0 picks the most likely token each time.")
@click.option("--top-k", type=int, default=None, help="Sample only from the K likeliest.")
@click.option("--seed", type=int, default=None, help="Make sampling reproducible.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None)
@_device
@_override
@click.pass_context
def generate(ctx: click.Context, prompt: str, max_new_tokens: int, temperature: float,
             top_k: int | None, seed: int | None, checkpoint: Path | None, device: str,
             overrides: tuple[str, ...]) -> None:
    """Sample a continuation of PROMPT from a language-model checkpoint."""
    cfg = _config(ctx, overrides)
    from llmkit.commands import generate as command

    command.run(cfg, prompt, echo=click.echo, checkpoint=checkpoint,
                max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed,
                device=device)


@cli.command()
@click.option("--text", default=None, help="One text to predict a span for.")
@click.option("--input", "input_path", type=click.Path(path_type=Path), default=None,
              help="A JSONL file: a 'text' (data.text_field) or 'context' (with 'question') "
                   "field per line.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write predictions as JSONL here instead of printing them.")
@click.option("--keep-text", is_flag=True,
              help="Repeat each input's text/context in its output line.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Windows per forward pass (a long text is several windows).")
@_device
@_override
@click.pass_context
def predict(ctx: click.Context, text: str | None, input_path: Path | None,
            output: Path | None, keep_text: bool, checkpoint: Path | None, batch_size: int,
            device: str, overrides: tuple[str, ...]) -> None:
    """Predict spans with a span-prediction checkpoint.

    Each output line keeps its input line's other fields (an id, ...) and adds span,
    span_text and score; texts of any length are read in windows.
    """
    if (text is None) == (input_path is None):
        raise click.UsageError("give exactly one of --text TEXT or --input FILE.jsonl")
    cfg = _config(ctx, overrides)
    from llmkit.commands import predict as command

    command.run(cfg, text=text, input_path=input_path, output=output, checkpoint=checkpoint,
                batch_size=batch_size, keep_text=keep_text, device=device, echo=click.echo)


@cli.command()
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--seq-len", type=int, default=None, help="Default: model.block_size.")
@click.option("--text", default=None, help="Run this text through the tokenizer instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_override
@click.pass_context
def smoke(ctx: click.Context, batch_size: int, seq_len: int | None, text: str | None,
          as_json: bool, overrides: tuple[str, ...]) -> None:
    """One forward/backward pass of the configured model on in-vocabulary ids."""
    cfg = _config(ctx, overrides)
    from llmkit.commands import smoke as command

    command.run(cfg, batch_size=batch_size, seq_len=seq_len, text=text, as_json=as_json,
                echo=click.echo, log=lambda m: click.echo(m, err=True))


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint to export (default: the best of the latest run).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder to write (default: export/ in the project).")
@click.option("--force", is_flag=True, help="Replace --out if it exists and is not empty.")
@click.option("--verify", is_flag=True,
              help="Load the export back (with transformers for LMs) and compare logits.")
@_override
@click.pass_context
def export(ctx: click.Context, checkpoint: Path | None, out: Path | None, force: bool,
           verify: bool, overrides: tuple[str, ...]) -> None:
    """Write a folder that transformers loads: config, safetensors, tokenizer, model card."""
    cfg = _config(ctx, overrides)
    from llmkit.commands import export as command

    command.run(cfg, checkpoint=checkpoint, out=out, force=force, verify=verify,
                echo=click.echo)


@cli.command()
@click.option("--prompt", required=True, help="Text whose next token the lens follows.")
@click.option("--target", default=None,
              help="The expected next token (LM), or the gold answer text (span).")
@click.option("--control-prompt", default=None, help="A control prompt (needs --target).")
@click.option("--control-target", default=None, help="The control prompt's expected token.")
@click.option("--variant", "variants", multiple=True, metavar="NAME=TEXT",
              help="Another wording of the prompt, looked at separately (repeatable).")
@click.option("--positions", type=click.Choice(["last", "all"]), default="last",
              show_default=True, help="Report the last position or every position.")
@click.option("--top-k", type=int, default=5, show_default=True, help="Tokens per cell.")
@click.option("--lens", "lens_kind", type=click.Choice(["logit", "tuned", "both"]),
              default="logit", show_default=True,
              help="logit: each layer through ln_f and the unembedding; tuned: with the "
                   "trained per-layer translators.")
@click.option("--train-tuned", is_flag=True,
              help="Train the tuned-lens translators now (saved beside the checkpoint).")
@click.option("--tuned-steps", type=int, default=300, show_default=True,
              help="Training steps of the tuned lens (with --train-tuned).")
@click.option("--copy-prob", type=float, default=0.5, show_default=True,
              help="Copy-collapse: least probability of the copied prompt token.")
@click.option("--copy-margin", type=float, default=0.2, show_default=True,
              help="Copy-collapse: least lead over the runner-up.")
@click.option("--copy-window", type=int, default=2, show_default=True,
              help="Copy-collapse: consecutive layers that must copy.")
@click.option("--heatmap", type=click.Choice(["entropy", "kl", "top_prob", "target_prob"]),
              default="entropy", show_default=True, help="The quantity the HTML colours.")
@_report_outputs
@_override
@click.pass_context
def lens(ctx: click.Context, overrides: tuple[str, ...], **flags: Any) -> None:
    """Per-layer logit / tuned lens of a checkpoint: where a prediction forms.

    Span checkpoints get the per-layer span view. See docs/lens.md.
    """
    cfg = _config(ctx, overrides)
    from llmkit.commands import lens as command

    command.run(cfg, command.options_from_flags(flags, _given(ctx, flags)), echo=click.echo)


@cli.command(name="inspect")
@click.option("--prompt", default=None, help="Text to continue (and measure).")
@click.option("--max-new-tokens", type=int, default=50, show_default=True)
@click.option("--temperature", type=float, default=0.8, show_default=True,
              help="0 picks the most likely token each time (as generate).")
@click.option("--top-k", type=int, default=None, help="Sample only from the K likeliest.")
@click.option("--seed", type=int, default=None,
              help="Make sampling reproducible (the same text as generate with this seed).")
@click.option("--no-attention", is_flag=True,
              help="Skip the per-head attention telemetry (runs the fast attention path).")
@click.option("--calibrate", is_flag=True,
              help="Derive thresholds from the checkpoint's own validation data.")
@click.option("--report-top", type=int, default=5, show_default=True,
              help="Tokens (with probabilities) listed per step in the report.")
@click.option("--entropy-share", type=float, default=0.75, show_default=True,
              help="High entropy: at least this share of log2 V bits.")
@click.option("--l2-ratio", type=float, default=20.0, show_default=True,
              help="Mid-layer anomaly: a layer's L2 over the early layers' largest.")
@click.option("--loop-distance", type=float, default=0.05, show_default=True,
              help="Repetition: final states at most this relative distance apart.")
@click.option("--loop-tokens", type=int, default=8, show_default=True,
              help="Repetition: a loop covers at least this many tokens.")
@click.option("--loop-period", type=int, default=4, show_default=True,
              help="Repetition: the longest repeated n-gram looked for.")
@click.option("--collapse-entropy", type=float, default=0.1, show_default=True,
              help="A head is collapsed below this normalised attention entropy.")
@_device
@_report_outputs
@click.option("--tensorboard", is_flag=True,
              help="Also write the per-step series and flags into the newest run's folder.")
@click.option("--check", "check_path", type=click.Path(path_type=Path), default=None,
              help="Validate the report FILE against its schema, and exit.")
@click.option("--show", "show_path", type=click.Path(path_type=Path), default=None,
              help="Print the report FILE (and render it with --html), and exit.")
@_override
@click.pass_context
def inspect_(ctx: click.Context, overrides: tuple[str, ...], check_path: Path | None,
             show_path: Path | None, **flags: Any) -> None:
    """A generation with per-step, per-layer telemetry and health flags."""
    from llmkit.commands import inspect as command

    if check_path is not None or show_path is not None:
        extra = _given(ctx, flags) - {"html_path"}
        if (check_path is not None and show_path is not None) or extra or (
                check_path is not None and flags["html_path"] is not None):
            raise click.UsageError("--check FILE stands alone; --show FILE takes only --html")
        if check_path is not None:
            command.check(check_path, echo=click.echo)
        else:
            command.show(show_path, flags["html_path"], echo=click.echo)
        return
    if flags["prompt"] is None:
        raise click.UsageError("give --prompt TEXT (or --check FILE / --show FILE)")
    opts = command.options_from_flags(flags, _given(ctx, flags))
    cfg = _config(ctx, overrides)
    command.run(cfg, opts, echo=click.echo, log=lambda m: click.echo(m, err=True))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="llmkit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
