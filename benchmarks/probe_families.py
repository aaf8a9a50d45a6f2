"""Held-out comparison of exit-classifier probe families (docs/kv_strategies.md): linear probes at several
L2 strengths against a small MLP, per exit layer, on document-disjoint folds; with ``--families features``
also other inputs to the same logistic regression: the cosine of consecutive hidden states (CALM's state
signal, cos(h_ℓ, h_ℓ−1) and cos(h_ℓ, h_ℓ−2), free), the full head's top-1 probability (confidence: a
head per check) and the hidden state with either.

    python benchmarks/probe_families.py --model /work/ckpt/smollm2-135m-ee-wmt14-joint --data-dir ../shared/data \\
        --docs 1784:1984 --layers 11,17,23

Runs documents A..B−1 at full depth with hidden states kept (the pass ``ee-bench fit-gate`` uses), labels
each token at layer ℓ with top1_ℓ = top1_{L−1} (``probe_labels``), and scores each family by
scikit-learn's ``GroupKFold`` over documents: accuracy at p ≥ 0.5, log loss, ROC AUC, and the recall
(share of agreeing tokens kept) at the best threshold whose precision is ≥ 0.9 and ≥ 0.8, which is how
many tokens a gate could exit at that precision. Features are standardised inside each fold.
"""

from __future__ import annotations

import argparse
import sys
import warnings


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-ee", help="model card or checkpoint folder")
    p.add_argument("--task", default="wmt22_de_en", help="a generation task (ee-bench ls tasks)")
    p.add_argument("--data-dir", default=None, help="offline data folder, e.g. ../shared/data")
    p.add_argument("--docs", default="1784:1984", help="START:END, disjoint from evaluated documents")
    p.add_argument("--layers", default="11,17,23", help="0-based exit layers to compare probes at")
    p.add_argument("--folds", type=int, default=5, help="document-disjoint folds (GroupKFold); prints to stdout")
    p.add_argument("--device", default=None, help="cpu, cuda … (None: the card's choice)")
    p.add_argument("--families", default="probes", help="probes (the L2 strengths and MLPs) and/or features "
                   "(hidden state, cosines, confidence and their unions, all with the linear probe at C = 0.003)")
    return p.parse_args(argv)


def recall_at_precision(y, p, precision: float) -> float:
    """Largest recall over thresholds whose precision is ≥ ``precision`` (0 if none)."""
    from sklearn.metrics import precision_recall_curve

    prec, rec, _ = precision_recall_curve(y, p)
    ok = rec[prec >= precision]
    return float(ok.max()) if ok.size else 0.0


def _check(args) -> tuple[list[str], int, int, list[int]]:
    """The options that need no model: (families, START, END, layers).

    Raises:
        EEBenchError: naming the option and a fix.
    """
    from ee_bench.errors import EEBenchError

    kinds = [k.strip() for k in args.families.split(",") if k.strip()]
    if not kinds or set(kinds) - {"probes", "features"}:
        raise EEBenchError(f"--families {args.families!r}: give probes, features or probes,features")
    try:
        start, end = (int(x) for x in args.docs.split(":"))
    except ValueError:
        raise EEBenchError(f"--docs {args.docs!r} must be START:END document indices, e.g. 1784:1984") from None
    if not 0 <= start < end:
        raise EEBenchError(f"--docs {args.docs!r}: need 0 ≤ START < END, e.g. 1784:1984")
    try:
        layers = [int(x) for x in args.layers.split(",") if x.strip()]
    except ValueError:
        raise EEBenchError(f"--layers {args.layers!r} must be comma-separated 0-based layers, e.g. 11,17,23") from None
    if not layers or min(layers) < 0:
        raise EEBenchError(f"--layers {args.layers!r} must name 0-based layers ≥ 0, e.g. 11,17,23")
    if "features" in kinds and min(layers) < 2:
        raise EEBenchError(f"--families features compares h_ℓ with h_ℓ−2; --layers {args.layers} must all be ≥ 2")
    if args.folds < 2 or end - start < args.folds:
        raise EEBenchError(f"--folds {args.folds} needs 2 ≤ folds ≤ the {end - start} documents of --docs {args.docs}")
    return kinds, start, end, layers


def _check_layers(layers: list[int], n_layers: int | None) -> None:
    from ee_bench.errors import EEBenchError

    if n_layers is not None and max(layers) >= n_layers - 1:
        raise EEBenchError(f"--layers {max(layers)}: this model's probe layers are 0..{n_layers - 2} (layer "
                           f"{n_layers - 1} is the last, whose top-1 is the label)")


def main(argv=None) -> int:
    from ee_bench.errors import EEBenchError

    args = parse_args(argv)
    try:
        return _run(args)
    except EEBenchError as exc:
        print(f"probe_families.py: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    kinds, start, end, layers = _check(args)
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ee_bench.errors import EEBenchError
    from ee_bench.evaluation import EvalOptions, run_documents
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.models.depth import checkpoint_depth
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs
    from ee_bench.training.exit_classifier import probe_labels

    card = resolve_card(args.model)
    _check_layers(layers, checkpoint_depth(card))  # from the configuration, before any weight loads
    spec = TaskIndex([]).expand([args.task])[0]
    docs = load_docs(spec, args.data_dir)
    if end > len(docs):
        raise EEBenchError(f"--docs {args.docs}: {spec.task} has {len(docs)} documents (0..{len(docs) - 1})")
    model = load_model(card, device=args.device)
    _check_layers(layers, model.n_layers)
    records = run_documents(model, spec, docs[start:end], keep_hidden=True,
                            options=EvalOptions(batch_size=8, progress=False))
    hidden = torch.cat([r.hidden for r in records], dim=1).float()  # (L, N, H)
    labels = probe_labels(torch.cat([r.stats.top1 for r in records], dim=1)).numpy()  # (L, N)
    groups = np.array([start + r.doc_id for r in records for _ in range(r.stats.top1.shape[1])])
    splits = list(GroupKFold(n_splits=args.folds).split(np.zeros(len(groups)), groups=groups))
    confidence = torch.cat([r.stats.top1_prob for r in records], dim=1).double().numpy()  # (L, N)
    unit = torch.nn.functional.normalize(hidden, dim=-1)

    def inputs(layer: int) -> dict[str, "np.ndarray"]:
        """Feature name → (N, d) inputs at ``layer``: hidden state, cosines, confidence, unions."""
        h = hidden[layer].double().numpy()
        cos = np.stack([(unit[layer] * unit[layer - k]).sum(-1).double().numpy() for k in (1, 2)], 1)
        conf = confidence[layer][:, None]
        return {"hidden state": h, "cosines": cos, "hidden state + cosines": np.hstack([h, cos]),
                "confidence (full head)": conf, "hidden state + confidence": np.hstack([h, conf])}

    def linear():  # the features' regression: fit-gate's usual L2 strength
        return LogisticRegression(C=0.003, max_iter=2000)

    families = {}
    if "probes" in kinds:
        families.update({
            "linear, C = 1": lambda: LogisticRegression(C=1.0, max_iter=2000),
            "linear, C = 0.03": lambda: LogisticRegression(C=0.03, max_iter=2000),
            "linear, C = 0.003": lambda: LogisticRegression(C=0.003, max_iter=2000),
            "MLP (64 hidden)": lambda: MLPClassifier((64,), alpha=1.0, max_iter=300, early_stopping=True, random_state=0),
            "MLP (256 hidden)": lambda: MLPClassifier((256,), alpha=1.0, max_iter=300, early_stopping=True, random_state=0),
        })
    print(f"{model.name} on {spec.task} docs {start}..{end - 1}: {len(groups)} tokens, GroupKFold({args.folds}) by document")
    print("| layer | probe | accuracy | log loss | AUC | recall at precision 0.9 | at 0.8 |")
    print("|---|---|---|---|---|---|---|")
    for layer in layers:
        y = labels[layer]
        feats = inputs(layer)
        runs = [(name, make, feats["hidden state"]) for name, make in families.items()]
        if "features" in kinds:
            runs += [(f"features: {name}", linear, x) for name, x in feats.items()]
        for name, make, x in runs:
            p = np.empty(len(y))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence and scikit-learn deprecation notices
                for train, test in splits:
                    p[test] = make_pipeline(StandardScaler(), make()).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
            print(f"| {layer} (positive {y.mean():.3f}) | {name} | {((p >= 0.5) == y).mean():.3f} | {log_loss(y, p):.3f} | "
                  f"{roc_auc_score(y, p):.3f} | {recall_at_precision(y, p, 0.9):.3f} | "
                  f"{recall_at_precision(y, p, 0.8):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
