"""Quick-retrain cost: the torch L-BFGS head (training/ml/heads.py) against scikit-learn.

    .venv/bin/python bench/quick_model.py              # 1k, 10k, 100k labeled embeddings
    .venv/bin/python bench/quick_model.py --quick      # 1k and 10k only
    .venv/bin/python bench/quick_model.py --sizes 1000 5000

Features: real EfficientNet-Lite0 embeddings of Fashion-MNIST when bench/active_learning.py has
cached them (``data/bench-cache/``), else synthetic clustered 1280-d vectors. Sizes beyond the real
pool are made by jittering real rows with Gaussian noise (sigma 0.01 per coordinate, about a third
of a coordinate's typical size) and re-normalising, so the class structure, and therefore the
solver's work, stays realistic. Accuracy is measured on 2,000 held-out real test images when
available.

Rows per size:
* ``fit_head``: one fit, l2 = 0.1, 50 L-BFGS iterations (what a quick retrain costs without CV).
* scikit-learn ``LogisticRegression(C=10, lbfgs)`` on the same matrix, one fit (the notes' baseline).
* ``automl_fit``: the full quick-model job: k-fold CV over the l2 grid, OOF probabilities, refit.
* scikit-learn doing the same job (5-fold ``cross_val_predict`` for each of 3 C values, then a
  refit) at the sizes listed in ``--sklearn-cv-sizes`` (default 1k only: it takes minutes beyond).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CACHE = REPO / "data" / "bench-cache"


def load_features(n_classes: int = 10):
    """(pool X, pool y, test X, test y, source description)."""
    tr, te = CACHE / "fmnist-train-5000-s0-lite0.npy", CACHE / "fmnist-test-2000-s0-lite0.npy"
    if tr.exists() and te.exists():
        sys.path.insert(0, str(REPO / "bench"))
        import active_learning as al

        _, X, y, Xte, yte = al.load_fashion(CACHE, 5000, 2000)
        return X, y, Xte, yte, "Fashion-MNIST lite0 embeddings (5,000 real rows, jittered copies beyond)"
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((n_classes, 1280)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, n_classes, n)
        X = centres[y] + 1.5 * rng.standard_normal((n, 1280), dtype=np.float32)
        return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), y

    X, y = draw(5000)
    Xte, yte = draw(2000)
    return X, y, Xte, yte, "synthetic clustered 1280-d vectors (run bench/active_learning.py for real ones)"


def grow(X, y, n, seed=0):
    if n <= len(y):
        return X[:n], y[:n]
    rng = np.random.default_rng(seed)
    idx = np.concatenate([np.arange(len(y)), rng.integers(0, len(y), n - len(y))])
    Xn = X[idx].copy()
    Xn[len(y) :] += 0.01 * rng.standard_normal((n - len(y), X.shape[1]), dtype=np.float32)
    Xn /= np.linalg.norm(Xn, axis=1, keepdims=True)
    return Xn, y[idx]


CPU: dict[int, float] = {}


def timed(fn, repeats=1):
    """Best wall time of ``repeats`` runs (and the CPU seconds of that run in CPU[id(result)])."""
    best, out, cpu = float("inf"), None, 0.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        dt = time.perf_counter() - t0
        if dt < best:
            best, out, cpu = dt, res, time.process_time() - c0
    CPU[id(out)] = cpu
    return best, out


def cold_start_seconds() -> float:
    """A fresh interpreter: import training.ml.heads and fit once (what an un-warmed worker pays)."""
    code = (
        "import time; t=time.perf_counter(); import numpy as np; from training.ml import heads; "
        "r=np.random.default_rng(0); X=r.standard_normal((1000,1280)).astype('float32'); "
        "heads.fit_head(X, r.integers(0,10,1000), multi_label=False, l2=0.1); print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def sklearn_cv_job(X, y, Cs=(0.1, 1.0, 10.0), k=5):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    best = None
    for C in Cs:
        p = cross_val_predict(
            LogisticRegression(C=C, max_iter=100),
            X,
            y,
            cv=StratifiedKFold(k, shuffle=True, random_state=0),
            method="predict_proba",
        )
        ll = -np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1)).mean()
        if best is None or ll < best[0]:
            best = (ll, C)
    return LogisticRegression(C=best[1], max_iter=100).fit(X, y), best[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1k and 10k only")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--sklearn-cv-sizes", type=int, nargs="*", default=[1000])
    ap.add_argument("--repeats", type=int, default=3, help="best of N for sizes <= 10k")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from training.ml import heads

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X0, y0, Xte, yte, source = load_features()
    cold = cold_start_seconds()
    heads.warm_up()

    rows = []
    for n in sizes:
        X, y = grow(X0, y0, n)
        reps = args.repeats if n <= 10_000 else 1
        t_fit, head = timed(lambda: heads.fit_head(X, y, multi_label=False, l2=0.1), reps)
        acc_fit = float((head.predict_proba(Xte).argmax(1) == yte).mean())
        t_sk, lr = timed(lambda: LogisticRegression(C=10.0, max_iter=100).fit(X, y), reps if n <= 1000 else 1)
        acc_sk = float(lr.score(Xte, yte))
        t_auto, res = timed(lambda: heads.automl_fit({"lite0": X}, y, multi_label=False), reps if n <= 1000 else 1)
        acc_auto = float((res.head.predict_proba(Xte).argmax(1) == yte).mean())
        sk_cv = None
        if n in args.sklearn_cv_sizes:
            t_skcv, (lr_cv, C) = timed(lambda: sklearn_cv_job(X, y), 1)
            sk_cv = (t_skcv, float(lr_cv.score(Xte, yte)), C)
        cpus = (CPU[id(head)], CPU[id(lr)], CPU[id(res)])
        rows.append((n, t_fit, acc_fit, t_sk, acc_sk, t_auto, acc_auto, res, sk_cv, cpus))
        print(f"  done {n}: fit {t_fit:.2f}s sklearn {t_sk:.2f}s automl {t_auto:.2f}s", file=sys.stderr)

    print("# Quick model: torch L-BFGS head vs scikit-learn\n")
    print(f"Features: {source}; test accuracy on {len(yte)} held-out real images; 10 classes; 2 CPU cores.")
    print(f"Cold start (fresh interpreter: imports + first 1k fit): {cold:.2f} s; all rows below are warm.")
    print(
        f"Load average at the end: {os.getloadavg()[0]:.1f} on 2 cores (above ~2, other processes compete and "
        "wall times inflate; CPU s = this process's own work summed over its threads).\n"
    )
    print("## One fit\n")
    print(
        "| labeled | `fit_head` s (CPU s) | acc | sklearn `LogisticRegression(C=10)` s (CPU s) | acc | speed-up (wall) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n, t_fit, acc_fit, t_sk, acc_sk, _, _, _, _, cpus in rows:
        print(
            f"| {n:,} | {t_fit:.2f} ({cpus[0]:.2f}) | {acc_fit:.3f} | {t_sk:.2f} ({cpus[1]:.2f}) | {acc_sk:.3f} | {t_sk / t_fit:.1f}x |"
        )
    print("\n## The whole quick-model job (CV over the l2 grid + out-of-fold probabilities + refit)\n")
    print(
        "| labeled | `automl_fit` s (CPU s) | folds | chosen l2 | acc | sklearn 5-fold x 3 C + refit s | acc | speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, _, _, _, _, t_auto, acc_auto, res, sk_cv, cpus in rows:
        sk = f"{sk_cv[0]:.2f} | {sk_cv[1]:.3f} | {sk_cv[0] / t_auto:.1f}x" if sk_cv else "— | — | —"
        print(f"| {n:,} | {t_auto:.2f} ({cpus[2]:.2f}) | {res.k} | {res.l2:g} | {acc_auto:.3f} | {sk} |")


if __name__ == "__main__":
    main()
