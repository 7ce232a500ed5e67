"""Zero-shot before the first label, measured on the learning bench's data sets (same run, same splits).

    .venv/bin/python bench/zero_shot.py                 # hymenoptera (the set whose names all map), 5 seeds
    .venv/bin/python bench/zero_shot.py --seeds 3

For each set: which class names map to ImageNet-1k through WordNet (training.ml.zeroshot.label_map);
where all do, the zero-shot model's test accuracy with no label at all (Lite2's ImageNet head summed
over each name's classes, on the same normalised vectors the product stores), then the learning
curve of the active queue with and without the zero-shot cold-start prior
(prior_rank below, used before the first quick model; measured worse, so not in the product), random order as the baseline,
all through bench/learning.py's simulate (the queue and AutoML functions the services call).
Writes bench/out/zero_shot.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import learning as lb
import learning_data as ld
from common import OUT_DIR

BUDGETS = (10, 20, 40, 80)


# Tried as the queue's cold start and measured worse than TypiClust alone (bench/out/zero_shot.md),
# so it lives here, not in the product.
def prior_rank(
    *,
    embeddings: np.ndarray,
    labeled_mask: np.ndarray,
    prior: np.ndarray,
    batch_size: int,
    seed: int = 0,
    min_confidence: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    from training.ml import active

    """Cold start with a prior (the zero-shot model's probabilities) and no trained model yet: the
    batch is shared evenly among the labels the prior predicts, and within each label TypiClust picks
    typical, diverse points among those it predicts confidently (>= ``min_confidence``, else its most
    confident ones), so the first labels cover every class with clear examples."""
    X = np.ascontiguousarray(embeddings, dtype=np.float32)
    labeled = np.asarray(labeled_mask, dtype=bool)
    unl = np.flatnonzero(~labeled)
    batch = int(min(batch_size, unl.size))
    if batch == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    P = np.asarray(prior, dtype=np.float32)
    pred, conf = P.argmax(axis=1), P.max(axis=1)
    rng = np.random.default_rng(seed)
    n_classes = P.shape[1]
    per_class: list[tuple[np.ndarray, np.ndarray]] = []
    for c in rng.permutation(n_classes):
        cand = unl[pred[unl] == c]
        if cand.size == 0:
            continue
        sure = cand[conf[cand] >= min_confidence]
        if sure.size < max(2, batch // n_classes):
            sure = cand[np.argsort(-conf[cand])[: max(2 * (batch // n_classes + 1), sure.size)]]
        rows = np.concatenate([np.flatnonzero(labeled), sure])
        sub_labeled = np.zeros(rows.size, bool)
        sub_labeled[: rows.size - sure.size] = True
        quota = int(min(sure.size, -(-batch // n_classes)))
        idx, sc = active._typiclust(
            X[rows],
            sub_labeled,
            quota,
            rng,
            knn=min(20, max(1, sure.size - 1)),
            pool_cap=20_000,
            fit_cap=10_000,
            density_cap=500,
            max_clusters=500,
        )
        per_class.append((rows[idx], sc))
    picks: list[int] = []
    scores: list[float] = []
    for r in range(batch):  # round robin over the labels
        for idx, sc in per_class:
            if r < idx.size and len(picks) < batch and int(idx[r]) not in picks:
                picks.append(int(idx[r]))
                scores.append(float(sc[r]))
    if len(picks) < batch:  # the prior predicts too few labels: typicality fills the batch
        rest = np.ones(X.shape[0], bool)
        rest[unl] = False
        rest[picks] = True
        more, more_sc = active._typiclust(
            X, rest, batch - len(picks), rng, knn=20, pool_cap=20_000, fit_cap=10_000, density_cap=500, max_clusters=500
        )
        picks += more.tolist()
        scores += more_sc.tolist()
    return np.asarray(picks, np.int64), np.asarray(scores, np.float32)


def _head(classes: list[str], multi_label: bool = False):
    from training.ml import backbone as bb
    from training.ml import zeroshot as zs

    mappings = [zs.label_map(c) for c in classes]
    groups = zs.class_groups(mappings)
    unmapped = [c for c, m in zip(classes, mappings) if m is None]
    # mapped, but every class it means goes to a more specific label ("shirt" beside "t-shirt")
    overlapped = [c for c, m, own in zip(classes, mappings, zs.class_owners(mappings)) if m is not None and not own]
    if groups is None:
        return None, unmapped, overlapped
    W, b = bb.imagenet_classifier("lite2")
    head = zs.ZeroShotHead(W=W, b=b, groups=groups, multi_label=multi_label, scale=zs.FEATURE_SCALE["lite2"])
    return head, [], []


def run(name: str, seeds: int) -> dict:
    ds = ld.LOADERS[name]()
    head, unmapped, overlapped = _head(ds.classes)
    row = {"name": ds.name, "classes": ds.classes, "unmapped": unmapped, "overlapped": overlapped}
    if head is None:
        return row
    pool, test = ld.features(ds, "lite2", "pool"), ld.features(ds, "lite2", "test")
    prior = head.predict_proba(pool)
    from training.ml import active

    X = active.ranking_embedding({k: ld.features(ds, k, "pool") for k in ld.FEATURES})

    def cold_start(labeled, seed):
        return prior_rank(embeddings=X, labeled_mask=labeled, prior=prior, batch_size=lb.BATCH, seed=seed)

    row["zero_shot_test_accuracy"] = float((head.predict_proba(test).argmax(1) == ds.y_test).mean())
    row["zero_shot_pool_accuracy"] = float((prior.argmax(1) == ds.y_pool).mean())
    t0 = time.perf_counter()
    curves = {"active": [], "active_prior": [], "random": []}
    for s in range(seeds):
        for order, cs in (("active", None), ("active_prior", cold_start), ("random", None)):
            r = lb.simulate(
                ds, order="random" if order == "random" else "active", seed=s, budgets=BUDGETS, cold_start=cs
            )
            curves[order].append([r["acc"][b] for b in BUDGETS])
        print(f"  {name} seed {s}: " + " ".join(f"{k} {v[-1]}" for k, v in curves.items()), file=sys.stderr, flush=True)
    for k, v in curves.items():
        a = np.array(v)
        row[f"{k}_mean"], row[f"{k}_sd"] = a.mean(0).tolist(), a.std(0).tolist()
    row["seeds"], row["seconds"] = seeds, time.perf_counter() - t0
    return row


def report(rows: list[dict]) -> str:
    out = [
        "# Zero-shot before the first label",
        "",
        "Label names mapped to ImageNet-1k through WordNet 3.0; Lite2's ImageNet head summed over each "
        "name's classes, on the stored (normalised) vectors. Curves: the bench's simulate (queue_rank, "
        "automl_fit) with and without the zero-shot cold-start prior; random order in the same run.",
        "",
    ]
    for r in rows:
        out.append(f"### {r['name']} ({len(r['classes'])} classes)")
        out.append("")
        if r["unmapped"]:
            out.append(f"Not every name maps (no ImageNet class for: {', '.join(r['unmapped'])}): no zero-shot model.")
            out.append("")
            continue
        if r.get("overlapped"):
            out.append(
                f"Every name maps, but {', '.join(r['overlapped'])} would have no ImageNet class of its own "
                "(each goes to a more specific label): no zero-shot model."
            )
            out.append("")
            continue
        out.append(
            f"Zero-shot accuracy with **no labels**: test {r['zero_shot_test_accuracy']:.3f}, "
            f"pool {r['zero_shot_pool_accuracy']:.3f}."
        )
        out.append("")
        out.append("| labels | active | active + zero-shot prior | random | prior − active | zero-shot − active |")
        out.append("|---|---|---|---|---|---|")
        for i, b in enumerate(BUDGETS):
            a, p, rnd = r["active_mean"][i], r["active_prior_mean"][i], r["random_mean"][i]
            out.append(
                f"| {b} | {a:.3f} ± {r['active_sd'][i]:.3f} | {p:.3f} ± {r['active_prior_sd'][i]:.3f} | "
                f"{rnd:.3f} ± {r['random_sd'][i]:.3f} | {100 * (p - a):+.1f} pt | "
                f"{100 * (r['zero_shot_test_accuracy'] - a):+.1f} pt |"
            )
        out.append("")
        out.append(f"{r['seeds']} seeds, {r['seconds']:.0f} s.")
        out.append("")
        gain = np.mean(np.array(r["active_prior_mean"]) - np.array(r["active_mean"]))
        verdict = "kept" if gain > 0 else "**not kept** in the product's queue (TypiClust alone is better)"
        zs_gain = [r["zero_shot_test_accuracy"] - a for a in r["active_mean"]]
        beats = [b for b, g in zip(BUDGETS, zs_gain) if g > 0]
        versus = (
            "at every budget here"
            if len(beats) == len(BUDGETS)
            else f"at {', '.join(map(str, beats))} labels"
            if beats
            else "at no budget here"
        )
        out.append(
            f"Cold-start prior: {100 * gain:+.1f} pt on average over the budgets, so it is {verdict}. The "
            f"zero-shot model itself beats the active-order quick model {versus}; the product keeps it "
            "deployed until a quick model scores as well on the same labels."
        )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(lb.ALL_SETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the last JSON")
    args = parser.parse_args()
    if args.report_only:
        rows = json.loads((OUT_DIR / "zero_shot.json").read_text())
    else:
        rows = [run(name, args.seeds) for name in args.sets]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "zero_shot.json").write_text(json.dumps(rows, indent=1))
    text = report(rows)
    (OUT_DIR / "zero_shot.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
