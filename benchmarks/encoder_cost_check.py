"""Does the cost model predict an encoder's early-exit speed-up? Predicted and measured ×/batch side by side
(issue 22, the MiniLM encoder).

    OMP_NUM_THREADS=1 python benchmarks/encoder_cost_check.py --data-dir ../shared/data          # all-MiniLM-L6-v2
    python benchmarks/encoder_cost_check.py --model runs/encoder_rows/ckpt/... --task glue_sst2 --data-dir ../shared/data

The model is the embedded all-MiniLM-L6-v2 with a fresh classification head of the task's labels (times
do not depend on the weights' values), or a fine-tuned checkpoint folder (``--model``). One batch of the
task's first ``--batch-size`` documents, in one process:

1. the model's own full forward and real layer-by-layer early exit
   (``ee_bench.decoding.encoder_exit.early_exit_classify``) under each setting — every example exits at a
   fixed layer k (``--force-layers``; no checks) and the confidence gate at ``--thresholds`` (by default three
   percentiles of the batch's own top-1 probabilities, so examples leave at different layers) —, and the
   pieces of the encoder's cost profile: the embedding of the batch, one encoder block over b rows
   (b = 1, 2, 4, … B, the blocks taken in turn), the pooler + classifier over b rows, the gate's statistics
   over b rows, the attention mask built for b rows (at the start, and again whenever the batch shrinks); all timed together by ``ee_bench.decoding.speedup.time_interleaved`` (warm-up, ``--repeats``
   rounds, median);
2. the predicted time of a setting from its own exit layers: with b_l examples still running at block l,
   ``embed(B) + mask(B) + Σ_l [block(b_l) + head(b_l) + check(b_l)·(l is checked) + mask(b_{l+1})·(the batch
   shrinks)]`` (each piece interpolated linearly in b); full depth ``embed(B) + mask(B) + L·(block(B) + head(B))``
   (the loop at full depth; the model's own forward is what is measured); predicted ×/batch = predicted full / predicted early
   exit, beside the measured ×/batch (the model's full forward ÷ the early-exit loop) and their ratio
   (band [0.9, 1.1]).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

BAND = (0.9, 1.1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a fine-tuned encoder folder (default: embedded all-MiniLM-L6-v2)")
    p.add_argument("--task", default="glue_sst2")
    p.add_argument("--data-dir", default=None, help="offline data folder (e.g. ../shared/data)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--force-layers", default="0,2,4")
    p.add_argument("--thresholds", default="quantiles",
                   help="confidence τ of the gated settings, or 'quantiles': the 30th, 60th and 90th percentile of "
                        "the batch's top-1 probabilities at the layers below the last (so that examples leave at "
                        "different layers, whatever the head)")
    p.add_argument("--num-labels", type=int, default=2, help="labels of the fresh head (GLUE: 2, MNLI 3)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/encoder_cost_check")
    return p.parse_args(argv)


def _interp(points: dict[int, float], b: int) -> float:
    """Linear in b through the measured row counts (held at the ends)."""
    xs = sorted(points)
    if b <= xs[0]:
        return points[xs[0]]
    if b >= xs[-1]:
        return points[xs[-1]]
    hi = next(x for x in xs if x >= b)
    lo = max(x for x in xs if x <= b)
    return points[lo] if hi == lo else points[lo] + (points[hi] - points[lo]) * (b - lo) / (hi - lo)


def predicted_ms(exit_layers: list[int], L: int, checked: bool, pieces: dict) -> float:
    """ms of one early-exit pass whose examples exit at ``exit_layers`` (module docstring formula)."""
    B = len(exit_layers)
    t = pieces["embed"] + _interp(pieces["context"], B)
    for layer in range(L):
        b = sum(1 for e in exit_layers if e >= layer)
        if b == 0:
            break
        t += _interp(pieces["block"], b) + _interp(pieces["head"], b)
        if checked and layer < L - 1:
            t += _interp(pieces["check"], b)
        left = sum(1 for e in exit_layers if e > layer)
        if 0 < left < b:  # the batch shrinks: the attention mask is rebuilt for the rows left
            t += _interp(pieces["context"], left)
    return t if B else 0.0


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import transformers
    from tabulate import tabulate
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ee_bench.decoding.encoder_exit import early_exit_classify
    from ee_bench.decoding.speedup import time_interleaved
    from ee_bench.decoding.timing import TimeSplit
    from ee_bench.decoding.traces import DecodeCounts, DecodeResult
    from ee_bench.exits.gates import GATES
    from ee_bench.files import write_json
    from ee_bench.models.hf_encoder import HFEncoderClassifier, embedded_minilm_path
    from ee_bench.models.unembed import reduce_logits
    from ee_bench.task_runners.classification import doc_texts
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    spec = TaskIndex([]).expand([args.task])[0]
    docs = load_docs(spec, args.data_dir)[: args.batch_size]
    path = args.model or embedded_minilm_path()
    if args.model is None:  # the fresh head is expected: no "weights newly initialized" report
        transformers.logging.set_verbosity_error()
        torch.manual_seed(0)  # the same fresh head every run
    hf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=args.num_labels) if args.model is None \
        else AutoModelForSequenceClassification.from_pretrained(path)
    model = HFEncoderClassifier(hf, AutoTokenizer.from_pretrained(path), Path(path).name, max_length=128)
    batch = model.encode([doc_texts(spec, d) for d in docs])
    B, T = batch.input_ids.shape
    L = model.n_layers
    conf = GATES.get("confidence")()

    def timed_mode(fn):
        def run(_chunk) -> DecodeResult:
            t0 = time.perf_counter()
            fn()
            t = time.perf_counter() - t0
            return DecodeResult((), TimeSplit(t, 0.0, 0.0, 0.0, 0.0, t), DecodeCounts())
        return run

    settings = [(f"every example exits at {k}", None, None, k) for k in (int(x) for x in args.force_layers.split(",") if x)]
    if args.thresholds == "quantiles":
        with torch.no_grad():
            probs = model.layer_logits(batch).stats.top1_prob[: L - 1].flatten()  # (L−1)·B top-1 probabilities
        taus = [round(float(torch.quantile(probs, q)), 4) for q in (0.3, 0.6, 0.9)]
    else:
        taus = [float(t) for t in args.thresholds.split(",") if t]
    settings += [(f"confidence τ {tau}", conf, tau, None) for tau in taus]
    with torch.no_grad():
        inputs = batch.model_inputs()
        h = model.embed(batch)
        cls = h[:, 0]
        rows = sorted({b for b in (1, 2, 4, 8, 16, 32, 64) if b < B} | {B})
        contexts = {b: model.layer_context(h[:b], batch.attention_mask[:b]) for b in rows}
        turn = iter(range(1 << 62))
        pieces_ops = {("embed",): lambda: model.embed(batch)}
        for b in rows:
            pieces_ops[("block", b)] = (lambda b=b: model.run_layer(next(turn) % L, h[:b], contexts[b]))
            pieces_ops[("head", b)] = (lambda b=b: model.head_logits(cls[:b]).float())
            logits_b = model.head_logits(cls[:b]).float()
            pieces_ops[("check", b)] = (lambda lg=logits_b: reduce_logits(lg))
            pieces_ops[("context", b)] = (lambda b=b: model.layer_context(h[:b], batch.attention_mask[:b]))
        exits = {}
        for name, gate, tau, k in settings:
            exits[name] = early_exit_classify(model, batch, gate, tau, force_layer=k).exit_layer.tolist()
        modes = [timed_mode(lambda: model.model(**inputs))]
        modes += [timed_mode(lambda g=gate, t=tau, k=k: early_exit_classify(model, batch, g, t, force_layer=k))
                  for _, gate, tau, k in settings]
        n_runs = len(modes)
        inner = 20  # piece calls per timed call: each piece is a fraction of a millisecond to a few ms
        modes += [timed_mode(lambda op=op: [op() for _ in range(inner)]) for op in pieces_ops.values()]
        results = time_interleaved(modes, [[0]], args.repeats)
    wall = [r.split.total_s * 1e3 for r in results]
    piece_ms = {key: w / inner for key, w in zip(pieces_ops, wall[n_runs:])}
    pieces = {"embed": piece_ms[("embed",)], "block": {b: piece_ms[("block", b)] for b in rows},
              "head": {b: piece_ms[("head", b)] for b in rows}, "check": {b: piece_ms[("check", b)] for b in rows},
              "context": {b: piece_ms[("context", b)] for b in rows}}
    full_measured = wall[0]
    full_pred = predicted_ms([L - 1] * B, L, False, pieces)
    print(f"{model.name}: L = {L}, {args.task} batch of {B} × {T} tokens, cpu float32, {args.threads} thread(s); "
          f"full forward measured {full_measured:.2f} ms, predicted {full_pred:.2f} ms")
    print(f"pieces (ms): embed {pieces['embed']:.3f}; " + "; ".join(
        f"{name} " + ", ".join(f"b={b} {v:.3f}" for b, v in pieces[name].items())
        for name in ("block", "head", "check", "context")))
    table, report = [], []
    for (name, gate, tau, k), ms in zip(settings, wall[1:n_runs]):
        ex = exits[name]
        pred = predicted_ms(ex, L, gate is not None, pieces)
        p_x, m_x = full_pred / pred, full_measured / ms
        ratio = m_x / p_x
        ok = BAND[0] <= ratio <= BAND[1]
        table.append([name, f"{sum(e + 1 for e in ex) / B:.2f}", f"{pred:.2f} / {ms:.2f}", f"{p_x:.3f}", f"{m_x:.3f}",
                      f"{ratio:.3f}", "yes" if ok else "NO"])
        report.append({"setting": name, "exit_layers": ex, "predicted_ms": pred, "measured_ms": ms,
                       "predicted_speedup": p_x, "measured_speedup": m_x, "measured_over_predicted": ratio})
    print(tabulate(table, headers=["setting", "layers run (mean)", "EE ms predicted / measured", "predicted ×/batch",
                                   "measured ×/batch", "measured ÷ predicted", f"in {list(BAND)}"], tablefmt="github"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "encoder_cost_check.json", {"args": vars(args), "model": model.name, "batch": [B, T],
                                                 "pieces_ms": {k: ({str(b): v for b, v in val.items()} if isinstance(val, dict)
                                                                   else val) for k, val in pieces.items()},
                                                 "full_measured_ms": full_measured, "full_predicted_ms": full_pred,
                                                 "settings": report})
    print(f"\nreport: {out / 'encoder_cost_check.json'} ({time.perf_counter() - t_start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
