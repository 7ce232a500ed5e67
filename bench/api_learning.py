"""Active learning as an outside evaluator measures it: through the public HTTP API of `make run`.

    .venv/bin/python bench/api_learning.py                         # hymenoptera + dtd10, 3 random seeds
    .venv/bin/python bench/api_learning.py --sets hymenoptera --seeds 1 --no-busy
    .venv/bin/python bench/api_learning.py --dtd10-pool 300 --dtd10-test 300
    .venv/bin/python bench/api_learning.py --probe-only    # only the readiness probe, into the saved results
    .venv/bin/python bench/api_learning.py --report-only   # the Markdown again from bench/out/api_learning.json

The script starts the product exactly as `make run` does (scripts/run.sh: migrate, bootstrap,
collectstatic, honcho with the Procfile's web server, Celery workers and beat; embedded SQLite and
filesystem broker) on its own PICTOR_DATA_DIR (/tmp/apibench-data-N) and PICTOR_BIND
(127.0.0.1:8123), and kills its process group at the end. Set-up uses the command line of
shared/API.md: `bootstrap` makes the admin user (PICTOR_ADMIN_USERNAME/PASSWORD), then per curve
`manage.py project create` and `manage.py apikey create --scope full`. Everything else is HTTP with
that key:

* the pool goes up through `POST samples` (multipart, 32 `file` parts per request, no labels);
* readiness: the API says nothing about features (no field, no endpoint), and `GET samples/next`
  cannot be used as a probe: it leases what it returns to the caller, and the caller's live leases
  come first on its next call, so a probe answered from the unranked fallback order (score null)
  pins those samples at the head of the queue for PICTOR_LEASE_SECONDS. The script therefore
  watches the product's own indicator, the project page's "Image features" panel
  (`GET /projects/{id}/embeddings/status/` with `HX-Request`, 286 once every backbone is done),
  signed in as the project's owner; it records when lite0 (the backbone the queue ranks on) and
  when every backbone were complete;
* then batches of 10: "active" takes `GET samples/next?count=10`; "random" draws 10 ids itself from
  `GET samples?labeled=false` (all pages) with a seeded generator; each is labeled with
  `PUT samples/{id}/labels` from the ground truth; then `POST trainings {"mode":"quick"}` and
  `GET trainings/{id}` every 0.25 s until it ends;
* "busy" (active order, --no-busy skips it): the labeler asks for the next 10 right after
  labeling, never asks for a training. At each budget it waits, polling `GET models`, for the model
  the product trains by itself (a quick model whose per-label support adds up to the labels given),
  which gives the automatic retrain's latency and whether that model was deployed;
* "eager" (active order, skipped with --no-busy too): the evaluator who does not wait for the
  features, asks `samples/next` right after the upload and otherwise goes on as "active";
* at each budget (10, 20, 40, 80, and 160 where the pool allows) the test images go through
  `POST invoke` (32 `file` parts per request) with the deployed model; when the model just trained
  is not the deployed one (a zero-shot version it did not beat stays deployed), it is also invoked
  with `?model=<id>`.

Wall times are recorded per step; every non-2xx answer is kept with its body. Results: Markdown on
stdout and in bench/out/api_learning.md, raw numbers in bench/out/api_learning.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import learning_data as ld
from common import OUT_DIR, REPO
from invoke import stop_server, wait_ready

BATCH = 10
BUDGETS = (10, 20, 40, 80, 160)
UPLOAD_BATCH = 32
INVOKE_BATCH = 32
POLL = 0.25
OWNER = "bench"
TERMINAL = ("succeeded", "failed", "cancelled")
ORDERS = ("active", "random", "busy", "eager")


class Problems(list):
    """Every non-2xx answer (and every stall) of the run: (where, method, path, status, body)."""

    def add(self, where: str, method: str, path: str, status, body: str) -> None:
        self.append({"where": where, "method": method, "path": path, "status": status, "body": body[:600]})
        print(f"  !! {where}: {method} {path} -> {status} {body[:300]}", file=sys.stderr, flush=True)


class Api:
    """One project's API client (Bearer key); non-2xx answers go to `problems`, 429 is retried."""

    def __init__(self, base: str, project: str, key: str, problems: Problems, where: str):
        import requests

        self.root = f"{base}/api/v1/projects/{project}"
        self.problems, self.where = problems, where
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kw):
        for _ in range(10):
            r = self.session.request(method, self.root + path, timeout=600, **kw)
            if r.status_code < 300:
                return r
            self.problems.add(self.where, method, path, r.status_code, r.text)
            if r.status_code != 429:
                return r
            time.sleep(float(r.headers.get("Retry-After") or 1))
        return r

    def json(self, method: str, path: str, **kw) -> dict | None:
        r = self.call(method, path, **kw)
        return r.json() if r.status_code < 300 else None


# ----------------------------------------------------------------------------- the product


class Product:
    """scripts/run.sh in a process group of its own, on a fresh data dir and a fixed port."""

    def __init__(self, port: int):
        n = 1
        while Path(f"/tmp/apibench-data-{n}").exists():
            n += 1
        self.data_dir = Path(f"/tmp/apibench-data-{n}")
        self.base = f"http://127.0.0.1:{port}"
        self.password = secrets.token_urlsafe(16)
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_VERSION")}
        self.env.update(
            PICTOR_DATA_DIR=str(self.data_dir),
            PICTOR_BIND=f"127.0.0.1:{port}",
            PICTOR_ADMIN_USERNAME=OWNER,
            PICTOR_ADMIN_PASSWORD=self.password,
            PYTHONPATH=str(REPO),  # this checkout, even if the venv is installed editable elsewhere
        )
        self.log = self.data_dir.with_suffix(".log")
        self.proc = None

    def start(self) -> float:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(REPO / "scripts" / "run.sh")],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Not /api/v1/schema: wait_ready's retries after a 2 s timeout would ask for it concurrently.
        wait_ready(f"{self.base}/accounts/login/", self.proc, seconds=300)
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [str(REPO / ".venv" / "bin" / "python"), "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def project(self, name: str) -> tuple[str, str]:
        project = self.manage("project", "create", "--name", name, "--owner", OWNER)
        key = self.manage("apikey", "create", "--project", project, "--scope", "full", "--name", "bench")
        return project, key

    def web_session(self):
        """The owner signed in to the web UI (for the feature-extraction panel only)."""
        import requests

        s = requests.Session()
        s.get(f"{self.base}/accounts/login/", timeout=30)
        r = s.post(
            f"{self.base}/accounts/login/",
            data={"username": OWNER, "password": self.password, "csrfmiddlewaretoken": s.cookies["csrftoken"]},
            headers={"Referer": f"{self.base}/accounts/login/"},
            timeout=30,
        )
        if "sessionid" not in s.cookies:
            raise RuntimeError(f"sign-in failed: {r.status_code} {r.text[:300]}")
        return s

    def log_problems(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        found = [
            f"{text.count(m)}× {m!r}" for m in ("Traceback", "WORKER TIMEOUT", "Internal Server Error") if m in text
        ]
        if "Traceback" in text:
            i = text.index("Traceback")
            found.append("first traceback:\n```\n" + text[max(0, i - 300) : i + 3000].strip() + "\n```")
        return found


# ----------------------------------------------------------------------------- one curve


def _upload(api: Api, files: list[Path]) -> list[str]:
    """POST samples in batches; returns the sample ids in pool order."""
    ids = []
    for i in range(0, len(files), UPLOAD_BATCH):
        chunk = files[i : i + UPLOAD_BATCH]
        parts = [("file", (f"{i + n}-{p.name}", p.read_bytes(), "image/jpeg")) for n, p in enumerate(chunk)]
        body = api.json("POST", "/samples", files=parts)
        if body is None:
            raise RuntimeError("upload failed")
        for entry in body["samples"]:
            if "error" in entry:
                raise RuntimeError(f"upload: {entry}")
            ids.append(entry["id"])
    return ids


def _wait_features(product: Product, web, project: str, problems: Problems, timeout: float = 1800) -> dict:
    """Seconds until lite0 (what the queue ranks) and until every backbone had features."""
    url = f"{product.base}/projects/{project}/embeddings/status/"
    t0 = time.perf_counter()
    out = {"lite0": None, "all": None}
    while time.perf_counter() - t0 < timeout:
        r = web.get(url, headers={"HX-Request": "true"}, timeout=30)
        if r.status_code not in (200, 286):
            problems.add("features", "GET", url, r.status_code, r.text)
        counts = {b: (n, total) for b, n, total in re.findall(r"(\w+): (\d+)/(\d+)", r.text)}
        lite0 = counts.get("lite0")
        if out["lite0"] is None and (r.status_code == 286 or (lite0 and lite0[0] == lite0[1])):
            out["lite0"] = time.perf_counter() - t0
        if r.status_code == 286:
            out["all"] = time.perf_counter() - t0
            return out
        time.sleep(1.0)
    problems.add("features", "GET", url, "timeout", f"features incomplete after {timeout:.0f} s: {r.text[-300:]}")
    return out


def _unlabeled(api: Api) -> list[str]:
    ids, url = [], "/samples?labeled=false&page_size=500"
    while url:
        body = api.json("GET", url)
        if body is None:
            break
        ids += [s["id"] for s in body["results"]]
        url = body["next"] and body["next"].split(api.root, 1)[-1]
    return ids


def _wait_training(api: Api, job: dict) -> dict:
    while job is not None and job["status"] not in TERMINAL:
        time.sleep(POLL)
        job = api.json("GET", f"/trainings/{job['id']}")
    return job or {"status": "lost", "model": None}


def _wait_auto_model(api: Api, n_labels: int, timeout: float = 300) -> tuple[dict | None, float | None, float | None]:
    """The quick model the product trains by itself on exactly n_labels labels (GET models): the
    model, seconds until it was listed, seconds until it was the deployed one (None: never)."""
    t0 = time.perf_counter()
    model, listed = None, None
    while time.perf_counter() - t0 < timeout:
        for m in (api.json("GET", "/models") or {}).get("results", []):
            support = sum(v.get("support", 0) for v in ((m.get("metrics") or {}).get("per_label") or {}).values())
            if m["mode"] == "quick" and support == n_labels:
                model, listed = m, listed or time.perf_counter() - t0
                if m["deployed"]:
                    return m, listed, time.perf_counter() - t0
        if listed is not None and time.perf_counter() - t0 > listed + 60:
            break  # listed a minute ago and still not deployed
        time.sleep(POLL)
    return model, listed, None


def _invoke(api: Api, test: list[tuple[bytes, str]], model: str | None = None) -> tuple[float | None, list, float]:
    """(accuracy, models that answered, seconds) on the test set; None when invoke failed."""
    t0 = time.perf_counter()
    right, answered = 0, set()
    query = f"?model={model}" if model else ""
    for i in range(0, len(test), INVOKE_BATCH):
        chunk = test[i : i + INVOKE_BATCH]
        parts = [("file", (f"{i + n}.jpg", data, "image/jpeg")) for n, (data, _) in enumerate(chunk)]
        body = api.json("POST", "/invoke" + query, files=parts)
        if body is None:
            return None, [f"v{v} {m}" for v, m in sorted(answered)], time.perf_counter() - t0
        results = body["results"] if "results" in body else [body]
        for res, (_, truth) in zip(results, chunk):
            right += res.get("label") == truth
            answered.add((res["model"]["version"], res["model"].get("mode", "?")))
    return right / len(test), [f"v{v} {m}" for v, m in sorted(answered)], time.perf_counter() - t0


def curve(
    product: Product, ds, test: list[tuple[bytes, str]], *, order: str, seed: int, problems: Problems, max_budget: int
) -> dict:
    where = f"{ds.name} {order}" + (f" seed {seed}" if order == "random" else "")
    print(f"{where}: project, upload {len(ds.pool_images)} ...", file=sys.stderr, flush=True)
    project, key = product.project(where)
    api = Api(product.base, project, key, problems, where)
    budgets = [b for b in BUDGETS if b <= min(len(ds.pool_images), max_budget)]
    run = {"set": ds.name, "order": order, "seed": seed, "project": project, "budgets": {}, "batches": []}
    t0 = time.perf_counter()
    ids = _upload(api, ds.pool_images)
    run["upload_s"] = time.perf_counter() - t0
    truth = {sid: ds.classes[int(y)] for sid, y in zip(ids, ds.y_pool)}
    if order == "eager":
        run["features_s"] = {"lite0": None, "all": None}
    else:
        run["features_s"] = _wait_features(product, product.web_session(), project, problems)
    rng = np.random.default_rng(seed)
    n = 0
    while n < budgets[-1]:
        step = {"n": n + BATCH}
        t = time.perf_counter()
        if order == "random":
            pick = [str(s) for s in rng.choice(sorted(_unlabeled(api)), BATCH, replace=False)]
        else:
            got = (api.json("GET", f"/samples/next?count={BATCH}") or {}).get("results", [])
            pick = [g["id"] for g in got]
            step["unscored"] = sum(g["score"] is None for g in got)
        step["pick_s"] = time.perf_counter() - t
        if not pick:
            problems.add(where, "GET", "/samples/next", 200, f"nothing to label after {n} labels")
            break
        t = time.perf_counter()
        for sid in pick:
            api.call("PUT", f"/samples/{sid}/labels", json={"labels": [truth[sid]]})
        step["label_s"] = time.perf_counter() - t
        step["classes"] = len({truth[sid] for sid in pick})
        n += len(pick)
        trained = None
        t = time.perf_counter()
        if order != "busy":  # active, random, eager
            job = _wait_training(api, api.json("POST", "/trainings", json={"mode": "quick"}))
            step["train_s"] = time.perf_counter() - t
            step["train_status"] = job["status"]
            if job["status"] != "succeeded":
                problems.add(where, "GET", f"/trainings/{job.get('id')}", job["status"], json.dumps(job))
            trained = job.get("model")
        elif n in budgets:
            trained, step["auto_s"], step["auto_deployed_s"] = _wait_auto_model(api, n)
            if step["auto_deployed_s"] is None:
                problems.add(where, "GET", "/models", "stall", f"no deployed quick model on {n} labels: {trained}")
        run["batches"].append(step)
        if n in budgets:
            acc, answered, secs = _invoke(api, test)
            point = {"deployed": acc, "answered": answered, "invoke_s": secs}
            point["made"] = trained and f"v{trained['version']}"
            if trained and not any(a.startswith(point["made"] + " ") for a in answered):
                point["trained"], _, _ = _invoke(api, test, model=trained["id"])
            else:
                point["trained"] = acc
            run["budgets"][n] = point
            print(f"  {where} @{n}: {point}", file=sys.stderr, flush=True)
    run["wall_s"] = time.perf_counter() - t0
    return run


def lease_probe(product: Product, ds, problems: Problems) -> dict:
    """`GET samples/next` as a readiness probe: right after the upload, then again once every feature
    is in (no label between): which classes, which scores, and whether the first answer stays pinned."""
    project, key = product.project(f"{ds.name} probe")
    api = Api(product.base, project, key, problems, f"{ds.name} probe")
    ids = _upload(api, ds.pool_images)
    truth = {sid: ds.classes[int(y)] for sid, y in zip(ids, ds.y_pool)}
    web = product.web_session()
    panel = web.get(f"{product.base}/projects/{project}/embeddings/status/", headers={"HX-Request": "true"})
    early = api.json("GET", f"/samples/next?count={BATCH}")["results"]
    _wait_features(product, web, project, problems)
    late = api.json("GET", f"/samples/next?count={2 * BATCH}")["results"]
    return {
        "set": ds.name,
        "panel_after_upload": re.findall(r"\w+: \d+/\d+", panel.text),
        "early": [(truth[r["id"]], r["score"]) for r in early],
        "late": [(truth[r["id"]], r["score"]) for r in late],
        "pinned": [r["id"] for r in late[:BATCH]] == [r["id"] for r in early],
    }


def _probe_report(probe: dict) -> list[str]:
    def summary(items):
        classes = sorted({c for c, _ in items})
        unscored = sum(score is None for _, score in items)
        return f"{len(items)} samples, classes {', '.join(classes)}; {unscored} with score null"

    return [
        "## `samples/next` as a readiness probe",
        "",
        f"{probe['set']}: the pool uploaded (in folder order, one class after the other); the feature panel then read "
        f"{', '.join(probe['panel_after_upload']) or 'complete'}. `GET samples/next?count={BATCH}` at once: "
        f"{summary(probe['early'])}. Once every feature was in, with no label given in between, "
        f"`GET samples/next?count={2 * BATCH}`: the first {BATCH} {'are' if probe['pinned'] else 'are not'} the same "
        f"samples as before ({summary(probe['late'][:BATCH])}), then {summary(probe['late'][BATCH:])}.",
        "",
    ]


# ----------------------------------------------------------------------------- report


def _cell(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "—"
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _mean(values: list) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _set_report(name: str, meta: dict, runs: list[dict]) -> list[str]:
    by = {o: [r for r in runs if r["order"] == o] for o in ORDERS}
    budgets = sorted({int(b) for r in runs for b in r["budgets"]})
    lines = [
        f"### {name} ({meta['classes']} classes, pool {meta['pool']}, test {meta['test']}; "
        f"random: {len(by['random'])} seeds)",
        "",
        "Accuracy on the test set through `POST invoke` with the deployed model. In brackets, where some run's "
        "deployed model was not the one that budget's training made (a zero-shot version it did not beat stayed "
        "deployed): the same runs with the model the training made (`?model=`).",
        "",
        "| budget | active | random mean ± sd | active − random | busy labeler (active, no training asked) "
        "| eager (active, no wait for features) |",
        "|---|---|---|---|---|---|",
    ]

    def at(run, b, key="deployed"):
        return run["budgets"].get(b, run["budgets"].get(str(b), {})).get(key)

    for b in budgets:
        cells = []
        for o in ORDERS:
            dep = [at(r, b) for r in by[o]]
            tr = [at(r, b, "trained") for r in by[o]]
            text = _cell(dep)
            if any(t is not None and t != d for t, d in zip(tr, dep)):
                text += f" [{_cell(tr)}]"
            cells.append(text)
        a, rnd = _mean([at(r, b) for r in by["active"]]), _mean([at(r, b) for r in by["random"]])
        gap = f"{100 * (a - rnd):+.1f} pt" if a is not None and rnd is not None else "—"
        lines.append(f"| {b} | {cells[0]} | {cells[1]} | {gap} | {cells[2]} | {cells[3]} |")
    lines += ["", "Timings (seconds of wall time):", ""]
    lines += [
        "| curve | upload | features ready after the upload: lite0 / all | pick 10 (median) | label 10 (median) | "
        "training wait (busy: the product's own model) median / max | invoke per budget (median) | models made | budgets answered by 2 versions | curve total |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        steps = r["batches"]
        waits = [s["train_s"] for s in steps if "train_s" in s] or [s["auto_s"] for s in steps if "auto_s" in s]
        inv = [p["invoke_s"] for p in r["budgets"].values()]
        mixed = [str(b) for b, p in r["budgets"].items() if len(p["answered"]) > 1]
        last = r["budgets"][max(r["budgets"], key=int)]["made"] if r["budgets"] else None
        f = r["features_s"]
        label = r["order"] + (f" {r['seed']}" if r["order"] == "random" else "")
        lines.append(
            f"| {label} | {r['upload_s']:.1f} | {_s(f['lite0'])} / {_s(f['all'])} | "
            f"{np.median([s['pick_s'] for s in steps]):.2f} | {np.median([s['label_s'] for s in steps]):.2f} | "
            f"{_s(np.median(waits) if waits else None)} / {_s(max(waits) if waits else None)} | "
            f"{_s(np.median(inv) if inv else None)} | {last or '—'} for {len(steps)} batches | {', '.join(mixed) or '—'} | "
            f"{r['wall_s']:.0f} |"
        )
    busy = [s for r in by["busy"] for s in r["batches"] if "auto_s" in s]
    if busy:
        lines += [
            "",
            "Busy labeler, no training asked: the product's own quick model on all the labels given was listed / "
            "deployed this long after the budget's last label: "
            + ", ".join(f"{s['n']}: {_s(s['auto_s'])} / {_s(s['auto_deployed_s'])} s" for s in busy)
            + ".",
        ]
    first = [
        f"{r['order']} {r['batches'][0]['classes']}"
        for r in runs
        if r["order"] in ("active", "busy", "eager") and r["batches"] and "classes" in r["batches"][0]
    ]
    if first:
        lines += ["", f"Classes among the first 10 labels (of {meta['classes']}): " + ", ".join(first) + "."]
    unscored = [(r["order"], s["n"], s["unscored"]) for r in runs for s in r["batches"] if s.get("unscored")]
    if unscored:
        lines += [
            "",
            "`samples/next` answers with unscored (fallback-order) items: "
            + ", ".join(f"{o} @{n}: {u}" for o, n, u in unscored),
        ]
    return lines


def _s(x) -> str:
    return "—" if x is None else f"{x:.1f}"


def report(results: dict) -> str:
    lines = [
        "# Active learning through the public HTTP API (`make run`, as an outside evaluator)",
        "",
        f"bench/api_learning.py: scripts/run.sh (gunicorn + Celery workers + beat, SQLite, filesystem broker, "
        f"product defaults: PICTOR_BACKBONES lite0,lite2,pixels, quick debounce, rate limits) on "
        f"{os.cpu_count()} cores; product start {results['start_s']:.0f} s, whole run {results['wall_s'] / 60:.1f} min. "
        "Per curve a new project and a full-scope key from the command line; the pool uploaded unlabeled "
        f"({UPLOAD_BATCH} per request); after every batch of {BATCH} labels a quick training is asked for and "
        "waited on (except by the busy labeler; the eager evaluator also skips the wait for features); the test set is classified with `POST invoke` "
        f"({INVOKE_BATCH} per request). Feature readiness from the project page's feature panel (the API has none).",
        "",
    ]
    for name, s in results["sets"].items():
        lines += _set_report(name, s["meta"], s["runs"]) + [""]
    if results.get("probe"):
        lines += _probe_report(results["probe"]) + (results.get("probe_log") or [])
    lines += ["## Non-2xx answers and stalls", ""]
    lines += [
        f"- {p['where']}: `{p['method']} {p['path']}` → {p['status']}: `{p['body'][:300]}`" for p in results["problems"]
    ]
    if not results["problems"]:
        lines.append("None.")
    lines += ["", "## Server log", ""] + (results["log"] or ["No tracebacks, no worker timeouts."]) + [""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def _dataset(name: str, pool: int | None, test: int | None):
    ds = ld.LOADERS[name]()
    for attr, want in (("pool", pool), ("test", test)):
        images, y = getattr(ds, f"{attr}_images"), getattr(ds, f"y_{attr}")
        if want and want < len(y):
            keep, _ = ld._split(len(y), y, 1 - want / len(y), seed=1)
            setattr(ds, f"{attr}_images", [images[i] for i in keep])
            setattr(ds, f"y_{attr}", y[keep])
    return ds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="hymenoptera,dtd10")
    ap.add_argument("--seeds", type=int, default=5, help="random-order curves per set")
    ap.add_argument("--no-busy", action="store_true", help="skip the busy-labeler and eager curves")
    ap.add_argument("--dtd10-pool", type=int, default=600, help="dtd10 pool size (stratified; 600 = the whole half)")
    ap.add_argument("--dtd10-test", type=int, default=600, help="dtd10 test size (stratified; 600 = the whole half)")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--report-only", action="store_true", help="report from bench/out/api_learning.json")
    ap.add_argument("--probe", action="store_true", help="run the readiness probe (hymenoptera) too")
    ap.add_argument("--probe-only", action="store_true", help="run only the probe, into the saved results")
    ap.add_argument("--max-budget", type=int, default=max(BUDGETS), help="stop the curves there (a short trial)")
    ap.add_argument("--orders", default=",".join(ORDERS), help="which curves to run (comma-separated)")
    ap.add_argument("--eager-runs", type=int, default=1, help="eager curves per set (timing differs run to run)")
    args = ap.parse_args()
    saved = OUT_DIR / "api_learning.json"
    if args.report_only or args.probe_only:
        results = json.loads(saved.read_text())
        results["problems"] = Problems(results["problems"])
        if args.probe_only:
            results["probe"], results["probe_log"] = run_probe(args.port, results["problems"])
    else:
        results = run_curves(args)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(results, indent=1, default=str))
    text = report(results)
    (OUT_DIR / "api_learning.md").write_text(text)
    print(text)
    return 0


def run_probe(port: int, problems: Problems) -> tuple[dict, list[str]]:
    product = Product(port)
    try:
        product.start()
        probe = lease_probe(product, _dataset("hymenoptera", None, None), problems)
    finally:
        product.stop()
    return probe, product.log_problems()


def run_curves(args) -> dict:
    started = time.perf_counter()
    product = Product(args.port)
    problems = Problems()
    results = {"sets": {}, "problems": problems}
    try:
        results["start_s"] = product.start()
        print(f"product up in {results['start_s']:.0f} s ({product.data_dir})", file=sys.stderr, flush=True)
        if args.probe:
            results["probe"] = lease_probe(product, _dataset("hymenoptera", None, None), problems)
        for name in args.sets.split(","):
            sizes = (args.dtd10_pool, args.dtd10_test) if name == "dtd10" else (None, None)
            ds = _dataset(name, *sizes)
            test = [(Path(p).read_bytes(), ds.classes[int(y)]) for p, y in zip(ds.test_images, ds.y_test)]
            meta = {"classes": len(ds.classes), "pool": len(ds.pool_images), "test": len(test)}
            orders = (
                [("active", 0)]
                + [("random", s) for s in range(args.seeds)]
                + ([] if args.no_busy else [("busy", 0)] + [("eager", s) for s in range(args.eager_runs)])
            )
            orders = [(o, s) for o, s in orders if o in args.orders.split(",")]
            runs = [
                curve(product, ds, test, order=o, seed=s, problems=problems, max_budget=args.max_budget)
                for o, s in orders
            ]
            results["sets"][name] = {"meta": meta, "runs": runs}
    finally:
        product.stop()
        results["log"] = product.log_problems() if product.log.exists() else []
        results["wall_s"] = time.perf_counter() - started
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "api_learning.json").write_text(json.dumps(results, indent=1, default=str))  # kept if it fails
    return results


if __name__ == "__main__":
    sys.exit(main())
