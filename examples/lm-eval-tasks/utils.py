"""Documents of the ee-bench lm-eval demo tasks (team-written; no dataset text is copied).

lm-eval calls :func:`load` through ``custom_dataset: !function utils.load`` in the YAML files, so the
JSONL files are found next to this file whatever the working directory.
"""

from __future__ import annotations

import json
from pathlib import Path


def load(data_file: str, **_ignored):
    """{"test": Dataset} from a JSONL file in this folder (``dataset_kwargs.data_file``)."""
    import datasets

    path = Path(__file__).resolve().parent / data_file
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
