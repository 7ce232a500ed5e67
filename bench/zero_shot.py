"""Zero-shot before the first label, measured on the learning bench's data sets (same run, same splits).

    .venv/bin/python bench/zero_shot.py                 # every set (those whose names all map are run), 5 seeds
    .venv/bin/python bench/zero_shot.py --sets hymenoptera fashion-without-shirt --seeds 3 --no-prior

For each set: which class names map to ImageNet-1k through WordNet (training.ml.zeroshot.label_map);
where all do, the zero-shot model's test accuracy with no label at all (Lite2's ImageNet head summed
over each name's classes, on the same normalised vectors the product stores); then, along the active
and random curves of bench/learning.py's simulate (the queue and AutoML functions the services call),
which model answers invoke: the product's choice between the quick and the zero-shot model
(training.ml.zeroshot.trained_beats_zero_shot) against the rule it replaced; and the learning curve
of the active queue with the zero-shot cold-start prior (prior_rank below, used before the first
quick model; measured worse, so not in the product). Writes bench/out/zero_shot.md and .json.
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


class Deployment:
    """What answers invoke along one simulated curve: the product's rule
    (training.ml.zeroshot.trained_beats_zero_shot, decided again at every retrain) against the rule it
    replaced (the quick model's out-of-fold accuracy on every labeled sample at least the zero-shot's,
    and once replaced, never back; checked here at the budgets only)."""

    def __init__(self, prior_pool: np.ndarray, zs_test_pred: np.ndarray, y_pool: np.ndarray, y_test: np.ndarray):
        self.prior, self.y, self.zs_acc = prior_pool, y_pool, float((zs_test_pred == y_test).mean())
        self.y_test = y_test
        self.new: dict[int, float] = {}
        self.old: dict[int, float] = {}
        self.old_replaced = False

    def __call__(self, *, n, labeled, result, present, test_pred) -> None:
        from training.ml.zeroshot import label_columns, trained_beats_zero_shot

        quick_acc = float((test_pred == self.y_test).mean())
        yy = np.searchsorted(present, self.y[labeled])
        Z = label_columns(self.prior[labeled], list(present), multi_label=False)
        held_out = result.evaluation != "none"
        oof = result.oof_probs if held_out else None
        wins = trained_beats_zero_shot(y=yy, trained=oof, zero_shot=Z, multi_label=False)
        self.new[n] = quick_acc if wins else self.zs_acc
        oof_acc = float((result.oof_probs.argmax(1) == yy).mean())
        zs_acc = float((Z.argmax(1) == yy).mean())
        self.old_replaced = self.old_replaced or (held_out and oof_acc >= zs_acc)
        self.old[n] = quick_acc if self.old_replaced else self.zs_acc

    def curve(self, which: dict) -> list[float]:
        return [which.get(b, self.zs_acc) for b in BUDGETS]  # no quick model yet: the zero-shot answers


def run(name: str, seeds: int, prior_curve: bool = True) -> dict:
    ds = ld.LOADERS[name]()
    head, unmapped, overlapped = _head(ds.classes)
    row = {"name": ds.name, "classes": ds.classes, "unmapped": unmapped, "overlapped": overlapped}
    if head is None:
        return row
    pool, test = ld.features(ds, "lite2", "pool"), ld.features(ds, "lite2", "test")
    prior = head.predict_proba(pool)
    zs_test = head.predict_proba(test).argmax(1)
    from training.ml import active

    X = active.ranking_embedding({k: ld.features(ds, k, "pool") for k in ld.FEATURES})

    def cold_start(labeled, seed):
        return prior_rank(embeddings=X, labeled_mask=labeled, prior=prior, batch_size=lb.BATCH, seed=seed)

    row["zero_shot_test_accuracy"] = float((zs_test == ds.y_test).mean())
    row["zero_shot_pool_accuracy"] = float((prior.argmax(1) == ds.y_pool).mean())
    t0 = time.perf_counter()
    orders = ("active", "active_prior", "random") if prior_curve else ("active", "random")
    curves = {k: [] for k in orders}
    deployed = {f"{o}_{rule}": [] for o in ("active", "random") for rule in ("new", "old")}
    for s in range(seeds):
        for order in orders:
            watch = Deployment(prior, zs_test, ds.y_pool, ds.y_test)
            r = lb.simulate(
                ds,
                order="random" if order == "random" else "active",
                seed=s,
                budgets=BUDGETS,
                cold_start=cold_start if order == "active_prior" else None,
                observe=watch if order != "active_prior" else None,
            )
            curves[order].append([r["acc"][b] for b in BUDGETS])
            if order != "active_prior":
                deployed[f"{order}_new"].append(watch.curve(watch.new))
                deployed[f"{order}_old"].append(watch.curve(watch.old))
        print(f"  {name} seed {s}: " + " ".join(f"{k} {v[-1]}" for k, v in curves.items()), file=sys.stderr, flush=True)
    for k, v in {**curves, **{f"deployed_{k}": v for k, v in deployed.items()}}.items():
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
        out.append(
            "What answers invoke (test accuracy of the deployed model, mean ± sd over seeds): the quick model "
            "alone, the zero-shot model alone, the product's choice between them "
            "(`trained_beats_zero_shot`, decided at every retrain) and the rule it replaced (out-of-fold "
            "accuracy on every labeled sample at least the zero-shot's; once replaced, never back)."
        )
        out.append("")
        out.append(
            "| order | labels | quick model | zero-shot | deployed (product) | deployed (old rule) | product − best of the two |"
        )
        out.append("|---|---|---|---|---|---|---|")
        zs_acc = r["zero_shot_test_accuracy"]
        for order in ("active", "random"):
            for i, b in enumerate(BUDGETS):
                q, new, old = (
                    r[f"{order}_mean"][i],
                    r[f"deployed_{order}_new_mean"][i],
                    r[f"deployed_{order}_old_mean"][i],
                )
                out.append(
                    f"| {order} | {b} | {q:.3f} ± {r[f'{order}_sd'][i]:.3f} | {zs_acc:.3f} | "
                    f"{new:.3f} ± {r[f'deployed_{order}_new_sd'][i]:.3f} | {old:.3f} ± "
                    f"{r[f'deployed_{order}_old_sd'][i]:.3f} | {100 * (new - max(q, zs_acc)):+.1f} pt |"
                )
        out.append("")
        out.append(f"{r['seeds']} seeds, {r['seconds']:.0f} s.")
        out.append("")
        if "active_prior_mean" not in r:
            continue
        out.append("The queue's cold start with the zero-shot prior (curves of the quick model):")
        out.append("")
        out.append("| labels | active | active + zero-shot prior | random | prior − active |")
        out.append("|---|---|---|---|---|")
        for i, b in enumerate(BUDGETS):
            a, p, rnd = r["active_mean"][i], r["active_prior_mean"][i], r["random_mean"][i]
            out.append(
                f"| {b} | {a:.3f} ± {r['active_sd'][i]:.3f} | {p:.3f} ± {r['active_prior_sd'][i]:.3f} | "
                f"{rnd:.3f} ± {r['random_sd'][i]:.3f} | {100 * (p - a):+.1f} pt |"
            )
        out.append("")
        gain = np.mean(np.array(r["active_prior_mean"]) - np.array(r["active_mean"]))
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
            f"Cold-start prior: {100 * gain:+.1f} pt on average over the budgets here. The "
            f"zero-shot model itself beats the active-order quick model {versus}."
        )
        out.append("")
    gains = {
        r["name"]: float(np.mean(np.array(r["active_prior_mean"]) - np.array(r["active_mean"])))
        for r in rows
        if "active_prior_mean" in r
    }
    if gains:
        # one verdict for the product's queue, over every set that has a zero-shot model
        worst = min(gains, key=gains.get)
        kept = min(gains.values()) > 0
        out.append(
            f"**The cold-start prior over {len(gains)} sets:** {100 * np.mean(list(gains.values())):+.1f} pt on "
            f"average, worst {worst} {100 * gains[worst]:+.1f} pt, so it is "
            + ("kept." if kept else "**not kept** in the product's queue (TypiClust alone is better on some set).")
        )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", default=[*lb.ALL_SETS, "fashion-without-shirt", "fashion-tops-and-bags"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-prior", action="store_true", help="skip the cold-start prior's curves")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the last JSON")
    args = parser.parse_args()
    if args.report_only:
        rows = json.loads((OUT_DIR / "zero_shot.json").read_text())
    else:
        rows = [run(name, args.seeds, prior_curve=not args.no_prior) for name in args.sets]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "zero_shot.json").write_text(json.dumps(rows, indent=1))
    text = report(rows)
    (OUT_DIR / "zero_shot.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
