"""Lightning's checkpoint writer and reader: atomic writes, verified reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from llmkit.checkpoint import load_checkpoint
from llmkit.fsutil import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint atomically; read each one through `load_checkpoint`.

    A crash or Ctrl-C while saving leaves the previous checkpoint intact, never half a file
    (a temporary file with a unique name, flushed, renamed into place: `fsutil`). Loading
    verifies the archive and the tensors before Lightning restores anything.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # Always weights_only: a checkpoint may hold tensors and plain data, never code.
        return load_checkpoint(Path(path))
