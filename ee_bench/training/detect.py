"""Whether ``ee-bench finetune --model M`` names an encoder classifier or a causal LM."""

from __future__ import annotations

import json
from pathlib import Path

from ee_bench.errors import EEBenchError
from ee_bench.models.cards import CARD_FILE_IN_CHECKPOINT, list_cards, parse_card
from ee_bench.tasks.spec import read_yaml

EMBEDDED_ENCODERS = {"all-minilm-l6-v2": "ee_bench.models.hf_encoder:embedded_minilm_path"}
"""Encoders shipped inside ee-bench (name → ``module:function`` giving the local folder); never a hub id."""


def detect_task_type(model: str, model_args: str | None = None, causal_hint: bool = False) -> str:
    """``"causal"`` or ``"encoder"`` for ``--model`` (``--task-type`` overrides this).

    Order: a checkpoint folder's ``ee_bench_card.yaml`` wrapper, else its ``config.json``
    ``architectures`` (``*ForCausalLM`` → causal); a shipped model card's wrapper (``hf-causal`` /
    ``hf-encoder``); an embedded encoder (:data:`EMBEDDED_ENCODERS`) → encoder; ``model_args`` with
    ``pretrained=`` → causal; any other name (a hub id) → encoder, unless ``causal_hint``
    (``--train-task`` was given).

    Raises:
        EEBenchError: for a folder with neither a card nor a ``config.json`` (e.g. an empty folder).
    """
    path = Path(model)
    if path.is_dir():
        card_file = path / CARD_FILE_IN_CHECKPOINT
        if card_file.is_file():
            return "causal" if parse_card(read_yaml(card_file), str(card_file)).model == "hf-causal" else "encoder"
        config = path / "config.json"
        if not config.is_file():
            raise EEBenchError(f"--model {model} is a folder without config.json (no checkpoint in it); point --model at "
                               f"a saved Hugging Face checkpoint, a model card (ee-bench ls models) or a hub id")
        try:
            archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except (json.JSONDecodeError, AttributeError):
            raise EEBenchError(f"{config} is not a JSON object; the checkpoint folder is damaged") from None
        return "causal" if any(str(a).endswith("ForCausalLM") or str(a).endswith("LMHeadModel") for a in archs) else "encoder"
    if model in EMBEDDED_ENCODERS:
        return "encoder"
    cards = list_cards()
    if model in cards:
        return "causal" if parse_card(read_yaml(cards[model]), str(cards[model])).model == "hf-causal" else "encoder"
    if "pretrained=" in (model_args or ""):
        return "causal"
    return "causal" if causal_hint else "encoder"
