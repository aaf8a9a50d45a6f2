"""Saving a fine-tuned checkpoint: ``save_pretrained`` of model and tokenizer, with ordinary file modes.

safetensors writes ``model.safetensors`` through a private temporary file (mode 0600); a checkpoint is
an ordinary, shareable folder, so every file written here gets the user's umask, as ``open()`` gives
(0644 under the usual umask 022), like the results files (:func:`ee_bench.results.atomic_write`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any


def save_checkpoint(model: Any, tokenizer: Any, out: Path) -> Path:
    """``model.save_pretrained(out)`` and ``tokenizer.save_pretrained(out)``, then the umask's modes.

    Args:
        model: a transformers ``PreTrainedModel``. tokenizer: its tokenizer. out: the folder (created).

    Returns:
        ``out``. Only files written by this call change mode; other files in the folder are left alone.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    before = _stamps(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    umask = os.umask(0)
    os.umask(umask)
    for path, stamp in _stamps(out).items():
        if before.get(path) != stamp:  # new or rewritten by the two calls above
            os.chmod(path, 0o666 & ~umask)
    return out


def _stamps(folder: Path) -> dict[Path, tuple[int, int, int]]:
    """Regular files under ``folder`` (symlinks not followed) → (inode, size, mtime in ns)."""
    out = {}
    for path in folder.rglob("*"):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            out[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out
