"""Lightning's checkpoint writer, made atomic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from llmkit.fsutil import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint through `fsutil.atomic_path` (unique temporary name, fsync, rename).

    A crash or Ctrl-C while saving leaves the previous checkpoint intact, never half a file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
