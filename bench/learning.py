"""Learning curves on four data sets: the active queue order against random order, same run.

    .venv/bin/python bench/learning.py                  # all sets, 5 seeds, cached features
    .venv/bin/python bench/learning.py --sets digits --seeds 3
    .venv/bin/python bench/learning.py --service         # the full service path (slow; see below)

What runs. Each simulated team starts from no labels and takes batches of 10. The default path
calls the *same functions* the product's services call, on cached features: the queue's ordering
(``training.ml.active.queue_rank`` -> ``training.ml.active.rank``) and the quick model's fitting
(``training.ml.heads.automl_fit`` over lite0, lite2 and the classic pixel feature, exactly as
``training.quick.quick_train`` calls it). ``--service`` instead runs a standalone Django on a
temporary SQLite: samples are ingested, embedded by the worker's code, claimed from the queue
(``labeling.queue.queue_claim``), labeled (``labeling.services.sample_labels_set``) and the quick
model retrained (``training.runner.quick_retrain_run``) after every batch; it costs ~1 min per curve
on this 2-core machine, so it defaults to one seed of each order on the two smallest sets.

Accuracy is measured on a disjoint test split by the model the product would deploy at that point.
Random order is averaged over ``--seeds`` seeds (spread = standard deviation over seeds); active
order over as many seeds (its k-means seeds differ), since it is not deterministic across seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import learning_data as ld
from common import OUT_DIR

BUDGETS = (10, 20, 40, 80, 160)
ALL_SETS = ("hymenoptera", "dtd10", "fashion", "digits")
BATCH = 10
#: The quick model's cost cap. The product's (PICTOR_QUICK_SECONDS, 5 s) is a safety limit on a
#: busy worker; here 2 cores are shared with other jobs, and a wall-clock cap would make the curves
#: depend on the load (skipped candidates), so the bench measures the recipe with a loose cap.
QUICK_SECONDS = 30.0


def _features(ds, split: str) -> dict[str, np.ndarray]:
    return {f: ld.features(ds, f, split) for f in ld.FEATURES}


def _fit_and_score(train: dict, y: np.ndarray, test: dict, y_test: np.ndarray, n_classes: int, pool: dict):
    from training.ml import heads

    res = heads.automl_fit(train, y, multi_label=False, n_classes=n_classes, pool=pool, max_seconds=QUICK_SECONDS)
    Xte = res.build(test)
    acc = float((res.head.predict_proba(Xte).argmax(axis=1) == y_test).mean())
    Xpool = res.build(pool)
    return acc, res, res.head.predict_proba(Xpool)


def simulate(
    ds, *, order: str, seed: int, budgets=BUDGETS, full_every_batch: bool = False, cold_start=None, observe=None
) -> dict:
    """One simulated team; ``cold_start(labeled_mask, seed)`` (bench/zero_shot.py's trial of a
    zero-shot prior) replaces the queue's order while there is no quick model yet;
    ``observe(n=, labeled=, result=, present=, test_pred=)`` sees each budget's quick model (its
    AutoML result, the classes present, its test predictions in the set's class indices)."""
    from training.ml.active import queue_rank

    pool = _features(ds, "pool")
    test = _features(ds, "test")
    y = ds.y_pool
    labeled = np.zeros(y.size, bool)
    rng = np.random.default_rng(1000 + seed)
    probs = None
    counts = None
    out = {}
    keys = {}
    recipe = None
    while labeled.sum() < max(budgets):
        if order == "random":
            unl = np.flatnonzero(~labeled)
            pick = rng.choice(unl, min(BATCH, unl.size), replace=False)
        elif probs is None and cold_start is not None:
            pick, _ = cold_start(labeled, seed)
        else:
            pick, _ = queue_rank(
                features=pool,
                labeled_mask=labeled,
                probs=probs,
                multi_label=False,
                thresholds=None,
                batch_size=BATCH,
                label_counts=counts,
                seed=seed,
            )
        labeled[pick] = True
        n = int(labeled.sum())
        ys = y[labeled]
        if len(np.unique(ys)) < 2:
            probs, counts = None, None
            if n in budgets:
                out[n] = float(np.mean(ds.y_test == np.bincount(ys).argmax()))
            continue
        if order == "random" and n not in budgets:
            continue
        train = {k: v[labeled] for k, v in pool.items()}
        # the product trains on the names that have labels: map to 0..k-1 and back
        present = np.unique(ys)
        remap = {c: i for i, c in enumerate(present)}
        yy = np.array([remap[c] for c in ys])
        if n not in budgets and recipe is not None and not full_every_batch:
            # between budgets: what the queue ranks with while the retrain lags (the latest
            # AutoML recipe refitted on all labels, training.queue_order._ranking_probs)
            from training.ml import heads

            head = heads.refit_recipe(
                train, yy, feature_key=recipe[0], l2=recipe[1], multi_label=False, n_classes=len(present), pool=pool
            )
            parts = recipe[0].split("+")
            Xp = pool[parts[0]] if len(parts) == 1 else heads.concat_features([pool[q] for q in parts])
            probs = head.predict_proba(Xp)
            counts = np.bincount(yy, minlength=len(present))
            continue
        acc, res, p = _fit_and_score(train, yy, test, ds.y_test, len(present), pool)
        recipe = (res.feature_key, res.l2)
        # predictions are in present-class space; accuracy must be in the full space
        Xte = res.build(test)
        pred = present[res.head.predict_proba(Xte).argmax(axis=1)]
        acc = float((pred == ds.y_test).mean())
        probs = p
        counts = np.bincount(yy, minlength=len(present))
        if n in budgets:
            out[n] = acc
            keys[n] = res.feature_key
            if observe is not None:
                observe(n=n, labeled=labeled.copy(), result=res, present=present, test_pred=pred)
    return {"acc": out, "keys": keys}


def run_set(name: str, seeds: int) -> dict:
    ds = ld.LOADERS[name]()
    t0 = time.perf_counter()
    curves = {"active": [], "random": []}
    keys = []
    for s in range(seeds):
        for order in ("active", "random"):
            r = simulate(ds, order=order, seed=s)
            curves[order].append([r["acc"][b] for b in BUDGETS])
            if order == "active":
                keys.append(r["keys"])
        print(
            f"  {name} seed {s}: active {curves['active'][-1]} random {curves['random'][-1]}",
            file=sys.stderr,
            flush=True,
        )
    A, R = np.array(curves["active"]), np.array(curves["random"])
    return {
        "name": ds.name,
        "classes": len(ds.classes),
        "pool": int(ds.y_pool.size),
        "test": int(ds.y_test.size),
        "active_mean": A.mean(0).tolist(),
        "active_sd": A.std(0).tolist(),
        "random_mean": R.mean(0).tolist(),
        "random_sd": R.std(0).tolist(),
        "gain": (A.mean(0) - R.mean(0)).tolist(),
        "seeds": seeds,
        "winning_features": keys,
        "seconds": time.perf_counter() - t0,
    }


def representation_check(name: str = "digits", per_class: int = 5, seeds: int = 5) -> dict:
    """Few-shot: per_class random labels per class; the AutoML's choice against ImageNet features only."""
    from training.ml import heads

    ds = ld.LOADERS[name]()
    pool, test = _features(ds, "pool"), _features(ds, "test")
    heads.warm_up()
    rows = []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(ds.y_pool == c), per_class, replace=False) for c in range(len(ds.classes))]
        )
        y = ds.y_pool[idx]
        auto = heads.automl_fit(
            {k: v[idx] for k, v in pool.items()},
            y,
            multi_label=False,
            n_classes=len(ds.classes),
            pool=pool,
            max_seconds=QUICK_SECONDS,
        )
        a_auto = float((auto.head.predict_proba(auto.build(test)).argmax(1) == ds.y_test).mean())
        img = heads.automl_fit(
            {k: pool[k][idx] for k in ("lite0", "lite2")}, y, multi_label=False, n_classes=len(ds.classes)
        )
        Xi = (
            test[img.feature_key]
            if "+" not in img.feature_key
            else heads.concat_features([test[p] for p in img.feature_key.split("+")])
        )
        a_img = float((img.head.predict_proba(Xi).argmax(1) == ds.y_test).mean())
        rows.append((a_auto, a_img, auto.feature_key, img.feature_key))
    return {
        "set": name,
        "per_class": per_class,
        "automl": float(np.mean([r[0] for r in rows])),
        "imagenet_only": float(np.mean([r[1] for r in rows])),
        "chosen": [r[2] for r in rows],
        "imagenet_chosen": [r[3] for r in rows],
    }


def _table(r: dict) -> str:
    lines = [
        f"### {r['name']} ({r['classes']} classes, pool {r['pool']}, test {r['test']}; {r['seeds']} seeds each)",
        "",
        "| labels | active (mean ± sd) | random (mean ± sd) | active − random |",
        "|---|---|---|---|",
    ]
    for i, b in enumerate(BUDGETS):
        lines.append(
            f"| {b} | {r['active_mean'][i]:.3f} ± {r['active_sd'][i]:.3f} | {r['random_mean'][i]:.3f} ± {r['random_sd'][i]:.3f} | {100 * r['gain'][i]:+.1f} pt |"
        )
    won = {}
    for k in r["winning_features"]:
        for b, key in k.items():
            won.setdefault(int(b), []).append(key)
    lines.append("")
    lines.append(
        "Representation chosen by the quick model (active order, per budget): "
        + "; ".join(f"{b}: {max(set(v), key=v.count)}" for b, v in sorted(won.items()))
    )
    return "\n".join(lines)


def _plot(results: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.4), squeeze=False)
    for ax, r in zip(axes[0], results):
        for key, color in (("active", "tab:blue"), ("random", "tab:gray")):
            m, s = np.array(r[f"{key}_mean"]), np.array(r[f"{key}_sd"])
            ax.plot(BUDGETS, m, "o-", color=color, label=key)
            ax.fill_between(BUDGETS, m - s, m + s, color=color, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
        ax.set_title(r["name"])
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default=",".join(ALL_SETS))
    ap.add_argument("--no-report", action="store_true", help="only run the sets (another process reports)")
    ap.add_argument("--report-only", action="store_true", help="report from the sets' saved results")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--service", action="store_true", help="run through Django services (slow)")
    args = ap.parse_args()
    if args.service:
        import learning_service

        learning_service.main(
            sets=args.sets.split(",") if args.sets != ",".join(ALL_SETS) else ["hymenoptera"], seeds=args.seeds
        )
        return
    import common  # noqa: F401  (repo on sys.path; no Django needed for the function path)
    from training.ml import heads

    heads.warm_up()  # a worker is warm; the cost cap must not be spent on torch's first call

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # each set's result is kept on its own, so sets can run in separate processes (2 cores)
    for n in [] if args.report_only else args.sets.split(","):
        r = run_set(n, args.seeds)
        (OUT_DIR / f"learning-{n}.json").write_text(json.dumps(r, indent=1))
    if args.no_report:
        return
    results = [
        json.loads((OUT_DIR / f"learning-{n}.json").read_text())
        for n in ALL_SETS
        if (OUT_DIR / f"learning-{n}.json").exists()
    ]
    rep = representation_check()
    _plot(results, OUT_DIR / "learning.png")
    gains = np.array([r["gain"] for r in results])
    parts = [
        "# Learning curves: active queue order vs random order",
        "",
        "Path: the queue's ordering function (`training.ml.active.queue_rank`) and the quick model's fitting "
        "function (`training.ml.heads.automl_fit`) on cached features (lite0, lite2, pixels) — the functions "
        "the services call, without the database round trips (`--service` for the full service path).",
        "",
    ]
    parts += [_table(r) + "\n" for r in results]
    parts += [
        "### Across sets",
        "",
        "| labels | mean gain | worst set |",
        "|---|---|---|",
    ]
    for i, b in enumerate(BUDGETS):
        w = int(np.argmin(gains[:, i]))
        parts.append(f"| {b} | {100 * gains[:, i].mean():+.1f} pt | {results[w]['name']} {100 * gains[w, i]:+.1f} pt |")
    parts += [
        "",
        f"### Representation: {rep['set']}, {rep['per_class']} random labels per class ({len(rep['chosen'])} draws)",
        "",
        f"AutoML (lite0, lite2, pixels+PCA and combinations): **{rep['automl']:.3f}** (chose {', '.join(rep['chosen'])}); "
        f"ImageNet features only: {rep['imagenet_only']:.3f} (chose {', '.join(rep['imagenet_chosen'])}).",
        "",
        "![curves](learning.png)",
    ]
    service = OUT_DIR / "learning-service.md"
    if service.exists():
        # the last --service run (the same curves through the database and the queue), if any
        parts += ["", service.read_text().replace("# ", "### ", 1)]
    text = "\n".join(parts) + "\n"
    (OUT_DIR / "learning.md").write_text(text)
    (OUT_DIR / "learning.json").write_text(json.dumps({"sets": results, "representation": rep}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
