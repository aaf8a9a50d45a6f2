"""``ee-bench inspect``: the top-k hypotheses of every layer for each token of one generated sentence
(paper Fig. 1(c)); with ``--sublayers`` also of the attention output, the FFN output and the two
residual streams of each block (paper §6.2, Eq. 3, Fig. 6, Table 10).

Example (the paper's sentence, the first WMT22 de-en segment)::

    ee-bench inspect --model smollm2-135m-ee --text "Die Ware hat unter 20 Euro gekostet." --sublayers

The sentence goes through the task's prompt template (default ``wmt22_de_en``), exactly as in
``ee-bench trace``. The model generates greedily at full depth; every vector is read through the
model's own final norm and head. Prints a table per generated token in the layout of Table 10 and
writes one PNG heatmap per token (layers × top-k, coloured by probability, the final token boxed)
and ``inspect.json`` to ``--output-dir``. Layers are 0-based.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

from ee_bench.commands.trace import (
    add_sentence_args,
    check_text,
    show_token,
    translation_prompt,
)
from ee_bench.errors import EEBenchError
from ee_bench.options import help_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ee-bench inspect", description=help_text(__doc__.split("\n\n")[0]))
    add_sentence_args(p, model_help="decoder model card (ee-bench ls models) or checkpoint folder")
    p.add_argument("--top-k", type=int, default=5, help="hypotheses kept per layer and readout (paper: 10)")
    p.add_argument("--table-k", type=int, default=1, help="hypotheses shown in each table cell (≤ --top-k)")
    p.add_argument("--sublayers", action="store_true",
                   help="also read the attention output, FFN output, mid-stream and block input (paper §6.2)")
    p.add_argument("--positions", default=None,
                   help="comma-separated 0-based generated-token indices to tabulate and plot (default: all)")
    p.add_argument("--output-dir", default="inspect_out", help="folder for the PNG heatmaps and inspect.json")
    p.add_argument("--max-gen-toks", type=int, default=None, help="token budget (default: the task's)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return p


def check_args(args: argparse.Namespace) -> list[int] | None:
    """Input checks that need no model; returns the parsed ``--positions`` (None = all).

    Raises:
        EEBenchError: naming the bad option and the fix.
    """
    check_text(args.text)
    if args.top_k < 1:
        raise EEBenchError(f"--top-k must be at least 1, got {args.top_k}; pass e.g. --top-k 5")
    if not 1 <= args.table_k <= args.top_k:
        raise EEBenchError(f"--table-k must be between 1 and --top-k ({args.top_k}), got {args.table_k}")
    if args.max_gen_toks is not None and args.max_gen_toks < 1:
        raise EEBenchError(f"--max-gen-toks must be at least 1, got {args.max_gen_toks}")
    if args.positions is None:
        return None
    try:
        positions = [int(x) for x in args.positions.split(",") if x.strip()]
    except ValueError:
        positions = []
    if not positions or min(positions) < 0:
        raise EEBenchError(f"--positions {args.positions!r} must be comma-separated 0-based token indices, e.g. 0,3")
    return positions


def check_budget(positions: list[int] | None, budget: int) -> None:
    """Refuse ``--positions`` beyond the token budget (before the model loads; what is actually
    generated can still be shorter, which :func:`~ee_bench.models.hypotheses.inspect_sentence` checks
    before reading the layers).

    Raises:
        EEBenchError: naming the position, the budget and the fix.
    """
    if positions and max(positions) >= budget:
        raise EEBenchError(f"--positions asks for token {max(positions)}, but at most {budget} tokens are generated "
                           f"(the token budget; indices 0..{budget - 1}); pick smaller positions or raise "
                           f"--max-gen-toks.")


def _cell(tokenizer, ids, probs, k: int, final: int) -> str:
    """Top-k hypotheses as ``'tok' 0.93``, comma-separated; ``*`` marks the final token."""
    return ", ".join(f"{show_token(tokenizer, int(i))}{'*' if int(i) == final else ''} {float(p):.2f}"
                     for i, p in zip(ids[:k], probs[:k]))


def overview_table(tokenizer, res, k: int) -> str:
    """Rows = layers (last first), columns = generated tokens, cells = block-output hypotheses."""
    from tabulate import tabulate

    out = res.readout("block_out")
    final = res.final_top1.tolist()
    n_layers, n = out.ids.shape[:2]
    headers = ["layer"] + [f"{i}: {show_token(tokenizer, t)}" for i, t in enumerate(res.output_ids)]
    rows = [[layer] + [_cell(tokenizer, out.ids[layer, i], out.probs[layer, i], k, final[i]) for i in range(n)]
            for layer in reversed(range(n_layers))]
    oracle = oracle_layers(res)
    rows += [[name] + vals for name, vals in oracle.items()]
    return tabulate(rows, headers=headers, tablefmt="github")


def oracle_layers(res) -> dict[str, list[int]]:
    """Per generated token, the 0-based first-match and saturation layers of the block output's
    top-1 (:mod:`ee_bench.exits.oracle`, paper §3.2)."""
    from ee_bench.exits.oracle import first_match_layer, saturation_layer

    top1 = res.readout("block_out").ids[:, :, 0]  # (L, N)
    return {"first match": first_match_layer(top1).tolist(), "saturation": saturation_layer(top1).tolist()}


def table10(tokenizer, res, position: int, k: int) -> str:
    """Paper Table 10 for one generated token: rows = layers (last first), columns = readouts."""
    from tabulate import tabulate

    from ee_bench.models.sublayers import READOUT_LABELS

    final = int(res.final_top1[position])
    n_layers = res.readouts[0].ids.shape[0]
    headers = ["layer"] + [READOUT_LABELS[r.name] for r in res.readouts]
    rows = [[layer] + [_cell(tokenizer, r.ids[layer, position], r.probs[layer, position], k, final) for r in res.readouts]
            for layer in reversed(range(n_layers))]
    return tabulate(rows, headers=headers, tablefmt="github")


PLOT_LABELS = {  # the readouts of ee_bench.models.sublayers.READOUT_LABELS, in matplotlib mathtext
    "block_out": r"block output $h^{\ell}$", "mid": r"mid-stream $h_{attn}^{\ell}$",
    "ffn": r"$\mathrm{FFN}(h_{attn}^{\ell})$", "block_in": r"block input $h^{\ell-1}$",
    "attn": r"$\mathrm{ATTN}(h^{\ell-1})$",
}


def plot_token(path: Path, tokenizer, res, position: int, title: str) -> None:
    """One PNG: a heatmap per readout, layers (y, last at the top) × rank (x), colour = probability,
    each cell labelled with its token; a red box around every cell holding the final token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    final = int(res.final_top1[position])
    n_layers, _, k = res.readouts[0].ids.shape
    fig, axes = plt.subplots(1, len(res.readouts), squeeze=False, sharey=True, layout="constrained",
                             figsize=(1.2 + (0.4 + 0.85 * k) * len(res.readouts), 1.4 + 0.3 * n_layers))
    image = None
    for ax, r in zip(axes[0], res.readouts):
        probs = r.probs[:, position].numpy()  # (L, k)
        image = ax.imshow(probs, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
        for layer in range(n_layers):
            for rank in range(k):
                tid, p = int(r.ids[layer, position, rank]), float(probs[layer, rank])
                ax.text(rank, layer, show_token(tokenizer, tid)[:10], ha="center", va="center", fontsize=6,
                        color="black" if p > 0.6 else "white")
                if tid == final:
                    ax.add_patch(Rectangle((rank - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        ax.set_title(PLOT_LABELS[r.name], fontsize=9)
        ax.set_xticks(range(k), [str(i + 1) for i in range(k)])
        ax.set_xlabel("rank")
    axes[0][0].set_ylabel("layer (0-based)")
    axes[0][0].set_yticks(range(n_layers))
    axes[0][0].tick_params(axis="y", labelsize=6)
    fig.colorbar(image, ax=axes[0].tolist(), label="probability", fraction=0.02)
    fig.suptitle(title, fontsize=10)
    with warnings.catch_warnings():  # tokens in scripts the default font lacks are drawn as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def to_json(model, args, prompt: str, res, tokenizer) -> dict:
    """The numbers behind the tables and figures: per readout, ids and probs as [L][N][k] lists."""
    return {
        "model": model.name, "n_layers": model.n_layers, "task": args.task, "text": args.text, "prompt": prompt,
        "top_k": args.top_k, "sublayers": args.sublayers,
        "output": {"text": res.output_text, "ids": list(res.output_ids),
                   "tokens": [tokenizer.decode([t]) for t in res.output_ids]},
        "oracle": {k.replace(" ", "_"): v for k, v in oracle_layers(res).items()},
        "readouts": {r.name: {"ids": r.ids.tolist(), "probs": r.probs.tolist()} for r in res.readouts},
    }


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    positions = check_args(args)
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.models.hf_causal import HFCausalLM
    from ee_bench.models.hypotheses import inspect_sentence

    spec, prompt = translation_prompt(args.task, args.text)
    budget = args.max_gen_toks or spec.max_gen_toks
    check_budget(positions, budget)
    out_dir = Path(args.output_dir)
    from ee_bench.preflight import check_output_folder

    check_output_folder(out_dir, "--output-dir")  # a file, or a folder that cannot be written: before loading
    model = load_model(resolve_card(args.model, args.model_args), device=args.device, dtype=args.dtype)
    if not isinstance(model, HFCausalLM):
        raise EEBenchError(f"inspect reads a decoder's layers; {args.model} is not a causal LM. Pick a decoder card "
                           f"(ee-bench ls models), e.g. smollm2-135m-ee.")
    if args.sublayers:
        from ee_bench.models.sublayers import sublayer_arch

        sublayer_arch(model.model)  # an unsupported architecture fails before generating
    import sys

    from tqdm import tqdm

    with tqdm(total=2, desc="inspect", disable=not args.progress, file=sys.stderr) as bar:  # the main command's style
        res = inspect_sentence(model, model.encode_prompt(prompt), spec.until, budget, args.top_k, args.sublayers,
                               positions=positions, progress=bar)
        positions = list(range(len(res.output_ids))) if positions is None else positions
        bar.total = 2 + len(positions)
        bar.set_postfix_str("figures")
        figures = {}
        for i in positions:  # the figures are drawn here, printed below (after the bar closes)
            figures[i] = out_dir / f"inspect_token{i:02d}.png"
            out_dir.mkdir(parents=True, exist_ok=True)
            plot_token(figures[i], model.tokenizer, res, i, f"{model.name}: top-{args.top_k} hypotheses per layer, "
                       f"token {i}: {show_token(model.tokenizer, res.output_ids[i])} (red box = final token)")
            bar.update(1)
    tok = model.tokenizer
    print(f"model {model.name} ({model.n_layers} layers, 0-based), task {spec.task} prompt, top-{args.top_k}")
    print(f"source: {args.text}")
    print(f"output: {res.output_text}")
    print("cells: token probability; * marks the final layer's top-1 (the generated token)")
    print()
    print("block output h^ℓ per generated token (paper Fig. 1(c)):")
    print(overview_table(tok, res, args.table_k))
    for i in positions:
        label = f"token {i}: {show_token(tok, res.output_ids[i])}"
        if args.sublayers:
            print(f"\n{label} (paper Table 10 layout)")
            print(table10(tok, res, i, args.table_k))
        print(f"figure: {figures[i]}")
    write_json(out_dir / "inspect.json", to_json(model, args, prompt, res, tok))
    print(f"numbers: {out_dir / 'inspect.json'}")
    return 0
