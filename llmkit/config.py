"""The project config: `llmkit.yaml` read once, at the edge, into typed frozen objects.

Every problem in a file is collected and reported together, each naming the key path, the
value found and what is allowed. `-o key.path=value` overrides go through the same checks.
`write_back` changes single values in the file without touching its comments or layout.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from llmkit.errors import ConfigError, LlmkitError
from llmkit.yamlio import SHOW_LIMIT, parse, read_text, show
from llmkit.yamlio import write_back as write_back  # callers edit llmkit.yaml through here

CONFIG_NAME = "llmkit.yaml"

# --------------------------------------------------------------------------------------
# Size presets: one plain table. Parameter counts are computed from these shapes (see
# `llmkit size`), never typed by hand. `tiny` trains on 2 CPU cores in minutes; `base` is
# GPT-2-small sized and wants a GPU.
# --------------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # tiny: chosen by measurement on the character-level Shakespeare recipe (benchmarks/
    # recipe.py, notes in benchmarks/README.md); small and base are not re-measured yet.
    "tiny": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "dropout": 0.1,
             "arch": "qwen3", "tie_embeddings": True,
             "weight_decay": 0.0, "batch_size": 16, "lr": 4e-3, "optimizer": "muon",
             "betas": [0.9, 0.99]},
    "small": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "dropout": 0.1,
              "arch": "gpt2", "tie_embeddings": True,
              "weight_decay": 0.1, "batch_size": 32, "lr": 6e-4, "optimizer": "adamw",
              "betas": [0.9, 0.95]},
    "base": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "dropout": 0.0,
             "arch": "gpt2", "tie_embeddings": True,
             "weight_decay": 0.1, "batch_size": 16, "lr": 3e-4, "optimizer": "adamw",
             "betas": [0.9, 0.95]},
}
MODEL_PRESET_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "arch",
                     "tie_embeddings")
TRAINING_PRESET_KEYS = ("weight_decay", "batch_size", "lr", "optimizer", "betas")


@dataclass(frozen=True)
class ProjectConfig:
    name: str = "llmkit-project"  # shown in run names and logs
    task: Literal["lm", "span"] = "lm"  # causal language model or span prediction
    seed: int = 1337  # seeds data order, initialisation and sampling


@dataclass(frozen=True)
class DataConfig:
    train: list[str] = field(default_factory=lambda: ["data/train*"])  # paths or globs
    val: list[str] = field(default_factory=list)  # empty: split val_fraction off train
    format: Literal["auto", "text", "jsonl"] = "auto"  # auto: by extension
    val_fraction: float = 0.1  # share of documents held out when `val` is empty
    text_field: str = "text"  # the JSONL field holding the text
    window_stride: int | None = None  # span: tokens between window starts (null: half)
    cache_dir: str = "data/.cache"  # where `llmkit prepare` writes encoded data


@dataclass(frozen=True)
class TokenizerConfig:
    path: str = "tokenizer/tokenizer.json"  # trained here when missing
    kind: Literal["bpe", "char"] = "bpe"  # byte-level BPE, or one token per character
    vocab_size: int = 8000  # asked of the trainer; the real size may be smaller
    min_frequency: int = 2  # a merge must occur this often to be learned
    bos: str = "<bos>"  # id 1
    eos: str = "<eos>"  # id 2
    pad: str = "<pad>"  # id 0


@dataclass(frozen=True)
class ModelConfig:
    size: Literal["tiny", "small", "base", "custom"] = "tiny"  # preset for unset shape keys
    vocab_size: int | None = None  # the tokenizer's real size, written by llmkit
    n_layer: int | None = None  # transformer blocks
    n_head: int | None = None  # attention heads (must divide n_embd)
    n_embd: int | None = None  # width of the residual stream
    block_size: int | None = None  # context length in tokens
    dropout: float | None = None  # dropout in attention, MLP and residuals
    bias: bool = False  # biases in Linear and LayerNorm layers (gpt2 only)
    pad_vocab_multiple: int = 1  # round embedding rows up (64 helps GPUs); loss unchanged
    # gpt2: learned positions, LayerNorm, GELU MLP; llama: rotary positions, RMSNorm,
    # SwiGLU MLP; qwen3: llama + RMSNorm on queries and keys (preset when unset)
    arch: Literal["gpt2", "llama", "qwen3"] | None = None
    tie_embeddings: bool | None = None  # LM head shares the token embedding (preset)
    init_from: str | None = None  # span: start the trunk from this LM checkpoint or project


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int | None = None  # sequences per device per step (preset when unset)
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000  # optimizer steps
    # adamw, or muon: Muon on the blocks' weight matrices + AdamW on the rest (preset)
    optimizer: Literal["adamw", "muon"] | None = None
    betas: list[float] | None = None  # AdamW's (beta1, beta2) (preset when unset)
    lr: float | None = None  # peak learning rate (preset when unset)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100  # linear warmup from 0
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float | None = None  # decay on matrices only (preset when unset)
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    precision: str = "auto"  # auto: bf16-mixed on a GPU that has it, else 32-true
    devices: int | Literal["auto"] = "auto"
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    num_nodes: int = 1
    val_every_steps: int = 200  # validate every N optimizer steps
    val_batches: int = 50  # batches per validation (a fixed set of windows)
    checkpoint_every_steps: int = 500  # also saved at the end and on Ctrl-C
    compile: bool = False  # torch.compile the model
    num_workers: int = 0  # DataLoader workers
    stop_on_overfit: bool = False  # stop when the overfitting monitor fires
    overfit_ratio: float = 0.5  # warn when train/val loss falls below this
    overfit_patience: int = 3  # validations of rising val loss while train loss falls


@dataclass(frozen=True)
class SpanConfig:
    max_span_tokens: int = 64  # longest span the decoder considers
    nospan_threshold: float = 0.0  # predict a span only if it beats "no span" by this
    val_examples: int | None = None  # validation examples scored (null: every one)


@dataclass(frozen=True)
class LoggingConfig:
    dir: str = "runs"  # TensorBoard runs go to <dir>/<project.name>/version_N
    log_every_steps: int = 10  # train/loss and throughput
    sample_every_steps: int = 200  # text samples (generations or highlighted spans)
    health_every_steps: int = 100  # per-layer activation RMS and gradient norms
    num_samples: int = 4  # samples per logging
    lens_windows: int = 8  # validation windows the per-layer lens reads (LM); 0 turns it off
    lens_every_steps: int = 0  # per-layer lens every N steps; 0: at every validation


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed")

SECTIONS: dict[str, type] = {
    "project": ProjectConfig,
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "span": SpanConfig,
    "logging": LoggingConfig,
}


@dataclass(frozen=True)
class Config:
    """A validated project config. Relative paths resolve against `root`."""

    root: Path
    project: ProjectConfig
    data: DataConfig
    tokenizer: TokenizerConfig
    model: ModelConfig
    training: TrainingConfig
    span: SpanConfig
    logging: LoggingConfig

    def path(self, rel: str | Path) -> Path:
        """Resolve a project-relative path (absolute paths are kept)."""
        p = Path(rel).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def file(self) -> Path:
        return self.root / CONFIG_NAME

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the resolved-config copy in each run directory."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some keys of one section changed (no re-validation)."""
        new = dataclasses.replace(getattr(self, section), **changes)
        return dataclasses.replace(self, **{section: new})


# Upper bounds that keep every shape and count inside torch's integer types (a value like
# 10**19 would overflow inside torch with a traceback); memory is checked at model build.
MAX_DIM = 2**31 - 1
MAX_COUNT = 2**62
MAX_NAME_CHARS = 100  # a project name is a folder name (runs/<name>); filesystems allow 255 bytes
# Keys naming where llmkit writes: inside the project unless given with -o (see load_config).
WRITE_PATH_KEYS = ("data.cache_dir", "tokenizer.path", "logging.dir")


def project_name_problem(name: str) -> str | None:
    """Why `name` cannot be a project name (one plain folder name), or None if it can."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "names the current or parent folder"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name.startswith("-"):
        return "starts with '-' (it would read as a command-line option)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if name != name.strip():
        return "starts or ends with a space"
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8")) > 2 * MAX_NAME_CHARS:
        return f"is {len(name)} characters long (at most {MAX_NAME_CHARS})"
    return None


# --------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------


def find_project(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` that holds `llmkit.yaml` (like git does)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise LlmkitError(
        f"no {CONFIG_NAME} in {here} or any folder above it; run inside a project, pass "
        f"-C DIR, or create one with `llmkit new NAME`"
    )


def load_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate `llmkit.yaml`; raise ConfigError listing every problem."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise LlmkitError(f"{path} not found; create a project with `llmkit new NAME`") from None
    _, raw = parse(text, str(path))
    if raw is None:
        # A file emptied by mistake would otherwise train on defaults without a word.
        raise ConfigError(["the file is empty (no sections), so every key would silently "
                           "take its default; write the sections you want (`llmkit new NAME` "
                           "writes a complete file), or `project: {}` to use the defaults"],
                          str(path))
    if not isinstance(raw, dict):
        found = type(raw).__name__
        raise ConfigError([f"the top level must be a mapping of sections, found {found}"],
                          str(path))
    problems: list[str] = []
    raw = apply_overrides(raw, overrides, problems)
    cfg = _build(raw, path.parent.resolve(), problems)
    if cfg is not None:
        _check_write_paths(cfg, _override_keys(overrides), problems)
    if problems:
        raise ConfigError(problems, str(path))
    assert cfg is not None
    return cfg


def config_from_dict(raw: dict[str, Any], root: Path) -> Config:
    """Validate an in-memory mapping (used by tests and benchmarks)."""
    problems: list[str] = []
    cfg = _build(raw, Path(root), problems)
    if problems:
        raise ConfigError(problems, "config")
    assert cfg is not None
    return cfg


def _override_keys(overrides: list[str] | tuple[str, ...]) -> set[str]:
    return {item.partition("=")[0].strip() for item in overrides}


def _check_write_paths(cfg: Config, given_on_command_line: set[str],
                       problems: list[str]) -> None:
    """Where llmkit writes (cache, tokenizer, runs) must lie inside the project.

    A `llmkit.yaml` from someone else must not make llmkit write into any folder it names;
    the user can still send output elsewhere with `-o key=PATH` on the command line. The
    check is on the path as written (`..` and absolute paths): a symlink the user made
    inside the project (runs -> /scratch/runs) is followed deliberately.
    """
    root = Path(os.path.abspath(cfg.root))
    for dotted in WRITE_PATH_KEYS:
        if dotted in given_on_command_line:
            continue
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        target = Path(os.path.abspath(cfg.path(value)))
        if target != root and root not in target.parents:
            problems.append(f"{dotted}: found {show(value)}, which is outside the project "
                            f"{root}; llmkit writes only inside the project unless told on "
                            f"the command line: use a path inside it, or pass "
                            f"-o {dotted}=PATH to write there")


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...],
                    problems: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides; values are parsed as YAML scalars."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or len(parts) != 2 or not all(parts):
            problems.append(f"override {item!r}: expected section.key=value, e.g. "
                            f"training.lr=3e-4")
            continue
        section, name = parts
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        sec = out.setdefault(section, {})
        if not isinstance(sec, dict):
            problems.append(f"override {item!r}: {section} is not a section")
            continue
        sec[name] = parsed
    return out


def _suggest(name: str, choices: list[str]) -> str:
    if len(name) > SHOW_LIMIT:  # difflib is quadratic: no suggestion for a huge key
        return ""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _key(name: Any) -> str:
    """A key as shown in a message: itself when short, else cut (see `show`)."""
    return name if isinstance(name, str) and len(name) <= SHOW_LIMIT else show(name)


def _check_type(key: str, value: Any, hint: Any, problems: list[str]) -> Any:
    """Check one value against a field's type hint; return it (ints widened to floats)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors: list[str] = []
        for arm in (a for a in args if a is not type(None)):
            sub: list[str] = []
            got = _check_type(key, value, arm, sub)
            if not sub:
                return got
            errors.extend(sub)
        allowed = " or ".join(_describe(a) for a in args)
        problems.append(f"{key}: found {show(value)}; allowed: {allowed}")
        return value
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            hint_txt = _suggest(value, [str(a) for a in args]) if isinstance(value, str) else ""
            problems.append(f"{key}: found {show(value)}; allowed: {choices}{hint_txt}")
        return value
    if origin is list and args == (float,):
        if (not isinstance(value, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            problems.append(f"{key}: found {show(value)}; allowed: a list of numbers")
            return value
        return [float(v) for v in value]
    if origin is list:
        if isinstance(value, str):
            value = [value]  # a single path is a list of one
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{key}: found {show(value)}; allowed: a path or a list of paths")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{key}: found {show(value)}; allowed: true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}: found {show(value)}; allowed: an integer")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: found {show(value)}; allowed: a number")
            return value
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            problems.append(f"{key}: found {show(value)}; allowed: a string")
        return value
    if value is None and hint is type(None):
        return None
    problems.append(f"{key}: found {show(value)}; allowed: {_describe(hint)}")
    return value


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if get_origin(hint) is Literal:
        return " or ".join(repr(a) for a in get_args(hint))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint))


def _build(raw: dict[str, Any], root: Path, problems: list[str]) -> Config | None:
    sections: dict[str, Any] = {}
    for name in raw:
        if name not in SECTIONS:
            problems.append(f"{_key(name)}: unknown section{_suggest(str(name), list(SECTIONS))}; "
                            f"sections are {', '.join(SECTIONS)}")
    for name, cls in SECTIONS.items():
        given = raw.get(name) or {}
        if not isinstance(given, dict):
            problems.append(f"{name}: found {show(given)}; allowed: a mapping of keys")
            given = {}
        hints = get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for key, value in given.items():
            if key not in hints:
                problems.append(f"{name}.{_key(key)}: unknown key{_suggest(str(key), fields)}")
                continue
            before = len(problems)
            checked = _check_type(f"{name}.{key}", value, hints[key], problems)
            if len(problems) == before:  # a bad value is reported and left at its default,
                values[key] = checked  # so that range checks still run on the rest

        try:
            sections[name] = cls(**values)
        except TypeError as e:  # only reachable through a bug in the checks above
            problems.append(f"{name}: {e}")
    if len(sections) != len(SECTIONS):
        return None
    sections = _apply_presets(sections)
    cfg = Config(root=root, **sections)
    _check_ranges(cfg, problems)
    return None if problems else cfg


def _apply_presets(sections: dict[str, Any]) -> dict[str, Any]:
    """Fill shape and training keys left unset from the size preset (tiny for custom)."""
    model: ModelConfig = sections["model"]
    preset = PRESETS.get(model.size, PRESETS["tiny"])
    m = {k: copy.copy(preset[k]) for k in MODEL_PRESET_KEYS if getattr(model, k) is None}
    sections["model"] = dataclasses.replace(model, **m)
    training: TrainingConfig = sections["training"]
    t = {k: copy.copy(preset[k]) for k in TRAINING_PRESET_KEYS if getattr(training, k) is None}
    sections["training"] = dataclasses.replace(training, **t)
    return sections


def _check_ranges(cfg: Config, problems: list[str]) -> None:
    """Value ranges and cross-field rules, all in one place."""

    def need(ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            problems.append(f"{key}: found {show(value)}; allowed: {allowed}")

    m, t, d, tk, lg, sp = cfg.model, cfg.training, cfg.data, cfg.tokenizer, cfg.logging, cfg.span
    name_problem = project_name_problem(cfg.project.name)
    need(name_problem is None, "project.name", cfg.project.name,
         f"one plain folder name, at most {MAX_NAME_CHARS} characters (this one "
         f"{name_problem}); it names the run folder <logging.dir>/<project.name>")
    for key in ("n_layer", "n_head", "n_embd", "block_size"):
        v = getattr(m, key)
        need(v >= 1, f"model.{key}", v, "an integer >= 1")
        need(v <= MAX_DIM, f"model.{key}", v, f"an integer <= {MAX_DIM}")
    if m.n_head >= 1 and m.n_embd >= 1 and m.n_embd % m.n_head:
        problems.append(f"model.n_embd: found {m.n_embd}, not divisible by model.n_head="
                        f"{m.n_head}; allowed: a multiple of n_head (e.g. "
                        f"{max(m.n_head, m.n_embd // m.n_head * m.n_head)})")
    need(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "a number in [0, 1)")
    need(m.arch == "gpt2" or not m.bias, "model.bias", m.bias,
         f"false with model.arch {m.arch} (its RMSNorm has no bias; the transformers "
         f"architecture it maps to has none), or model.arch gpt2")
    need(m.vocab_size is None or 4 <= m.vocab_size <= MAX_DIM, "model.vocab_size",
         m.vocab_size, f"null (set by `llmkit tokenizer`) or an integer >= 4 and <= {MAX_DIM}")
    need(tk.vocab_size <= MAX_DIM, "tokenizer.vocab_size", tk.vocab_size,
         f"an integer <= {MAX_DIM}")
    need(m.pad_vocab_multiple >= 1, "model.pad_vocab_multiple", m.pad_vocab_multiple,
         "an integer >= 1 (1 = no padding, 64 for GPUs)")
    # Imported here: the tokenizer package reads data files, and data reads the config.
    from llmkit.tokenizer.core import MIN_BPE_VOCAB

    need(tk.kind != "bpe" or tk.vocab_size >= MIN_BPE_VOCAB, "tokenizer.vocab_size",
         tk.vocab_size, f"an integer >= {MIN_BPE_VOCAB} for kind bpe (256 bytes + 3 "
         f"specials), or use kind char")
    need(tk.min_frequency >= 1, "tokenizer.min_frequency", tk.min_frequency, "an integer >= 1")
    specials = [tk.pad, tk.bos, tk.eos]
    need(len(set(specials)) == 3 and all(specials), "tokenizer.bos/eos/pad", specials,
         "three different non-empty strings")
    need(0.0 <= d.val_fraction < 1.0, "data.val_fraction", d.val_fraction, "a number in [0, 1)")
    need(bool(d.train), "data.train", d.train, "at least one path or glob")
    for key in ("batch_size", "grad_accum", "max_steps", "val_every_steps", "val_batches",
                "checkpoint_every_steps", "num_nodes", "overfit_patience"):
        v = getattr(t, key)
        need(v >= 1, f"training.{key}", v, "an integer >= 1")
        need(v <= MAX_COUNT, f"training.{key}", v, f"an integer <= {MAX_COUNT}")
    need(t.lr > 0, "training.lr", t.lr, "a number > 0")
    need(0.0 <= t.min_lr_ratio <= 1.0, "training.min_lr_ratio", t.min_lr_ratio, "[0, 1]")
    need(t.warmup_steps >= 0, "training.warmup_steps", t.warmup_steps, "an integer >= 0")
    need(t.weight_decay >= 0, "training.weight_decay", t.weight_decay, "a number >= 0")
    need(len(t.betas) == 2 and all(0.0 <= b < 1.0 for b in t.betas), "training.betas",
         t.betas, "two numbers in [0, 1), e.g. [0.9, 0.99]")
    need(0.0 <= t.label_smoothing < 1.0, "training.label_smoothing", t.label_smoothing,
         "a number in [0, 1)")
    need(t.grad_clip >= 0, "training.grad_clip", t.grad_clip, "a number >= 0 (0 disables)")
    need(t.precision in PRECISIONS, "training.precision", t.precision,
         ", ".join(PRECISIONS) + _suggest(t.precision, list(PRECISIONS)))
    need(t.devices == "auto" or t.devices >= 1, "training.devices", t.devices,
         "'auto' or an integer >= 1")
    need(t.num_workers >= 0, "training.num_workers", t.num_workers, "an integer >= 0")
    need(0.0 < t.overfit_ratio < 1.0, "training.overfit_ratio", t.overfit_ratio, "(0, 1)")
    need(sp.max_span_tokens >= 1, "span.max_span_tokens", sp.max_span_tokens, "an integer >= 1")
    need(sp.val_examples is None or sp.val_examples >= 1, "span.val_examples",
         sp.val_examples, "null (score every validation example) or an integer >= 1")
    if d.window_stride is not None:
        need(1 <= d.window_stride <= m.block_size - 2, "data.window_stride", d.window_stride,
             f"null (half a window) or an integer in [1, model.block_size - 2 = "
             f"{m.block_size - 2}]")
    need(m.init_from is None or cfg.project.task == "span", "model.init_from", m.init_from,
         "null for task lm (init_from starts a span model from a trained LM)")
    for key in ("log_every_steps", "sample_every_steps", "health_every_steps", "num_samples"):
        v = getattr(lg, key)
        need(v >= 1, f"logging.{key}", v, "an integer >= 1")
    need(lg.lens_windows >= 0, "logging.lens_windows", lg.lens_windows,
         "an integer >= 0 (0 turns the per-layer lens off)")
    need(lg.lens_every_steps >= 0, "logging.lens_every_steps", lg.lens_every_steps,
         "an integer >= 0 (0: after every validation)")
