"""The feature store: one directory per (project, backbone) of append-only, memory-mapped files.

Plain numpy + FAISS, no Django. Layout of a store directory:

- ``meta.json``   ``{"dim": D}``; rows are float16, L2-normalised.
- ``vectors.bin`` N rows of D float16.
- ``keys.bin``    N x 16 bytes: the sample id (UUID bytes) of each row.
- ``seqs.bin``    N x int64: the id of the database row each vector was copied from. Written last,
  so its length is the committed row count, and its last value is the watermark a sync resumes from.
- ``ann.faiss`` + ``ann.json``  an IVF index (PCA, inverted lists, 8-bit scalar quantizer) over rows
  ``[0, ann_rows)``; rows appended after it are searched exactly until the next index update.

Readers map the files (``np.memmap``, FAISS ``IO_FLAG_MMAP``): every process of a machine shares the
same page-cache pages, nothing is copied into a process. Writers hold ``<dir>.lock`` (``flock``); an
interrupted append leaves a tail longer than ``seqs.bin`` says, which the next writer truncates.
Sample deletion leaves stale rows behind (callers filter by the ids they know); a rebuild compacts.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KEY = np.dtype("S16")
#: Below this many rows search is exact (a chunked matmul is a few milliseconds).
ANN_MIN_ROWS = 20_000
#: Rows appended after the index was built are searched exactly; past this many they are added to it.
ANN_TAIL_MAX = 20_000
#: Candidates per neighbour the index returns before exact re-ranking on the stored vectors.
ANN_RERANK = 12
_CHUNK = 8192


def _faiss():
    import faiss

    return faiss


@dataclass
class Snapshot:
    """The first ``n`` committed rows of a store, memory-mapped (read-only)."""

    root: Path
    dim: int
    n: int
    keys: np.ndarray  # (n,) S16
    vectors: np.ndarray  # (n, dim) float16
    seqs: np.ndarray  # (n,) int64
    ann: object | None = None
    ann_rows: int = 0
    _order: np.ndarray | None = field(default=None, repr=False)
    _hi_sorted: np.ndarray | None = field(default=None, repr=False)

    @property
    def last_seq(self) -> int:
        return int(self.seqs[-1]) if self.n else 0

    def rows_for(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key (the last one appended wins), -1 when absent."""
        keys = np.asarray(keys, dtype=KEY)
        if self.n == 0 or keys.size == 0:
            return np.full(keys.shape, -1, np.int64)
        if keys.size <= 4:  # a linear scan beats sorting a million keys for one lookup
            return np.array([self.row_for(bytes(k)) for k in keys], np.int64)
        # Sorting the first 8 bytes of each key as an integer is 7x faster than sorting 16-byte
        # strings; the full key is compared afterwards, and a shared prefix falls back to a scan.
        if self._order is None:
            hi = self._hi(self.keys)
            self._order = np.argsort(hi, kind="stable")
            self._hi_sorted = hi[self._order]
        hi_sorted = self._hi_sorted
        q = self._hi(keys)
        pos = np.clip(np.searchsorted(hi_sorted, q, side="right") - 1, 0, self.n - 1)
        rows = self._order[pos].astype(np.int64)
        ok = self.keys[rows] == keys
        for i in np.flatnonzero(~ok):
            rows[i] = self.row_for(bytes(keys[i]).ljust(16, b"\0")) if hi_sorted[pos[i]] == q[i] else -1
        return rows

    @staticmethod
    def _hi(keys: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(keys).view(np.uint64).reshape(-1, 2)[:, 0]

    def row_for(self, key: bytes) -> int:
        # compare the first 8 bytes as integers (a few ms for a million rows), then the whole key
        q = self._hi(np.asarray([key], dtype=KEY))[0]
        hits = np.flatnonzero(self._hi(self.keys) == q)
        full = np.asarray(key, dtype=KEY)
        for r in hits[::-1]:
            if self.keys[r] == full:
                return int(r)
        return -1

    def matrix(self, rows: np.ndarray) -> np.ndarray:
        """float32 copy of the given rows (sorted access keeps the page reads sequential)."""
        rows = np.asarray(rows, np.int64)
        if rows.size == 0:
            return np.zeros((0, self.dim), np.float32)
        order = np.argsort(rows, kind="stable")
        out = np.empty((rows.size, self.dim), np.float32)
        for start in range(0, rows.size, _CHUNK):
            part = order[start : start + _CHUNK]
            out[part] = self.vectors[rows[part]]
        return out

    def _exact(self, q: np.ndarray, start: int, stop: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        best_r, best_s = np.zeros(0, np.int64), np.zeros(0, np.float32)
        for a in range(start, stop, _CHUNK):
            b = min(a + _CHUNK, stop)
            s = self.vectors[a:b].astype(np.float32) @ q
            top = np.argpartition(-s, min(k, s.size) - 1)[:k] if s.size > k else np.arange(s.size)
            best_r = np.concatenate([best_r, top + a])
            best_s = np.concatenate([best_s, s[top]])
            if best_r.size > 4 * k:
                keep = np.argpartition(-best_s, k - 1)[:k]
                best_r, best_s = best_r[keep], best_s[keep]
        return best_r, best_s

    def search(self, query: np.ndarray, k: int, *, exclude_key: bytes | None = None, exact: bool = False):
        """(rows, cosine scores) of the ``k`` nearest rows, best first; rows with ``exclude_key`` skipped.

        The indexed prefix is searched through the IVF index and re-ranked on the stored vectors; the
        tail (and everything, with ``exact`` or without an index) by a chunked matmul.
        """
        q = np.asarray(query, np.float32).reshape(-1)
        want = k + 8  # room for the excluded key's own rows (the sample, its re-embeddings)
        rows, scores = [], []
        start = 0
        if self.ann is not None and not exact and self.ann_rows:
            D, I = self.ann.search(q[None], min(self.ann_rows, want * ANN_RERANK))
            cand = I[0][(I[0] >= 0) & (I[0] < self.ann_rows)].astype(np.int64)
            if cand.size:
                rows.append(cand)
                scores.append(self.matrix(cand) @ q)  # exact cosine of the candidates
            start = self.ann_rows
        if start < self.n:
            r, s = self._exact(q, start, self.n, want)
            rows.append(r)
            scores.append(s)
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        r, s = np.concatenate(rows), np.concatenate(scores)
        r, first = np.unique(r, return_index=True)
        s = s[first]
        if exclude_key is not None:
            keep = self.keys[r] != np.asarray(exclude_key, dtype=KEY)
            r, s = r[keep], s[keep]
        order = np.argsort(-s, kind="stable")[:k]
        return r[order], s[order]


_cache_lock = threading.Lock()
_cache: OrderedDict = OrderedDict()
_MAX_OPEN = 16


class FeatureStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ------------------------------------------------------------------ reading

    def _meta(self) -> dict | None:
        try:
            return json.loads((self.root / "meta.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def exists(self) -> bool:
        return (self.root / "meta.json").exists()

    def snapshot(self) -> Snapshot | None:
        """The committed rows, mapped; cached per process until the files change. None when empty."""
        meta = self._meta()
        if meta is None:
            return None
        try:
            st = os.stat(self.root / "seqs.bin")
        except FileNotFoundError:
            return None
        ann_stamp = None
        try:
            a = os.stat(self.root / "ann.faiss")
            ann_stamp = (a.st_ino, a.st_mtime_ns, a.st_size)
        except FileNotFoundError:
            pass
        stamp = (st.st_ino, st.st_size, ann_stamp)
        key = str(self.root)
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None and hit[0] == stamp:
                _cache.move_to_end(key)
                return hit[1]
        dim = int(meta["dim"])
        n = st.st_size // 8
        n = min(
            n, os.path.getsize(self.root / "keys.bin") // 16, os.path.getsize(self.root / "vectors.bin") // (2 * dim)
        )
        if n == 0:
            return None
        snap = Snapshot(
            root=self.root,
            dim=dim,
            n=n,
            keys=np.memmap(self.root / "keys.bin", dtype=KEY, mode="r", shape=(n,)),
            vectors=np.memmap(self.root / "vectors.bin", dtype=np.float16, mode="r", shape=(n, dim)),
            seqs=np.memmap(self.root / "seqs.bin", dtype=np.int64, mode="r", shape=(n,)),
        )
        if ann_stamp is not None:
            try:
                info = json.loads((self.root / "ann.json").read_text())
                faiss = _faiss()
                index = faiss.read_index(str(self.root / "ann.faiss"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
                faiss.extract_index_ivf(index).nprobe = int(info.get("nprobe", 32))
                snap.ann, snap.ann_rows = index, min(int(info["rows"]), n)
            except Exception:  # a damaged index is only slower search: exact until it is rebuilt
                snap.ann, snap.ann_rows = None, 0
        with _cache_lock:
            _cache[key] = (stamp, snap)
            while len(_cache) > _MAX_OPEN:
                _cache.popitem(last=False)
        return snap

    # ------------------------------------------------------------------ writing

    @contextmanager
    def locked(self):
        """The writers' lock (a sibling file, so it survives a rebuild swapping the directory)."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(str(self.root) + ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _committed(self, dim: int) -> int:
        try:
            return os.path.getsize(self.root / "seqs.bin") // 8
        except FileNotFoundError:
            return 0

    def append(self, *, seqs: np.ndarray, keys: np.ndarray, vectors: np.ndarray) -> int:
        """Append rows (hold :meth:`locked`). Returns the committed row count after it."""
        vectors = np.asarray(vectors, np.float16)
        if vectors.ndim != 2:
            raise ValueError("vectors must be (n, dim)")
        dim = vectors.shape[1]
        meta = self._meta()
        if meta is None:
            self.root.mkdir(parents=True, exist_ok=True)
            for name in ("vectors.bin", "keys.bin", "seqs.bin"):
                (self.root / name).touch()
            (self.root / "meta.json").write_text(json.dumps({"dim": dim}))
        elif int(meta["dim"]) != dim:
            raise ValueError(f"store {self.root} holds {meta['dim']}-d vectors, not {dim}-d")
        n = self._committed(dim)
        if len(vectors) == 0:
            return n
        # an append that died half-way left a longer tail in the first files: cut it back
        for name, width in (("vectors.bin", 2 * dim), ("keys.bin", 16)):
            path = self.root / name
            if os.path.getsize(path) != n * width:
                os.truncate(path, n * width)
        with open(self.root / "vectors.bin", "ab") as f:
            f.write(np.ascontiguousarray(vectors).tobytes())
        with open(self.root / "keys.bin", "ab") as f:
            f.write(np.asarray(keys, dtype=KEY).tobytes())
        with open(self.root / "seqs.bin", "ab") as f:  # last: this commits the rows
            f.write(np.asarray(seqs, dtype=np.int64).tobytes())
        return n + len(vectors)

    def ann_update(self, *, min_rows: int = ANN_MIN_ROWS, tail_max: int = ANN_TAIL_MAX, force: bool = False) -> str:
        """Keep the ANN index in step (hold :meth:`locked`): build it once the store is large, add the
        tail once it is long, retrain when the store has grown 4x. Returns what it did."""
        snap = self.snapshot()
        if snap is None or (snap.n < min_rows and not force):
            return "none"
        info = {}
        try:
            info = json.loads((self.root / "ann.json").read_text())
        except (FileNotFoundError, ValueError):
            pass
        faiss = _faiss()
        indexed, trained_on = int(info.get("rows", 0)), int(info.get("trained_on", 0))
        rebuild = not (self.root / "ann.faiss").exists() or snap.n >= 4 * max(trained_on, 1) or indexed > snap.n
        if not rebuild and snap.n - indexed < tail_max and not force:
            return "current"
        if rebuild:
            nlist = int(np.clip(np.sqrt(snap.n), 16, 2048))
            pca = min(128, snap.dim)
            index = faiss.index_factory(snap.dim, f"PCA{pca},IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            n_train = min(snap.n, max(40 * nlist, 10_000))
            index.train(snap.matrix(np.sort(rng.choice(snap.n, n_train, replace=False))))
            start, trained_on, what = 0, snap.n, "built"
        else:
            index = faiss.read_index(str(self.root / "ann.faiss"))
            start, what = indexed, "extended"
        for a in range(start, snap.n, 50_000):
            b = min(a + 50_000, snap.n)
            index.add(snap.vectors[a:b].astype(np.float32))
        tmp = self.root / "ann.faiss.tmp"
        faiss.write_index(index, str(tmp))
        os.replace(tmp, self.root / "ann.faiss")
        nprobe = 32 if nlist_of(index) >= 128 else max(1, nlist_of(index) // 4)
        (self.root / "ann.json").write_text(json.dumps({"rows": snap.n, "trained_on": trained_on, "nprobe": nprobe}))
        return what

    def replace_with(self, other: FeatureStore) -> None:
        """Swap a freshly built store in for this one (hold :meth:`locked`). Readers that mapped the
        old files keep reading them until they reopen."""
        trash = self.root.with_name(self.root.name + ".old")
        shutil.rmtree(trash, ignore_errors=True)
        if self.root.exists():
            os.replace(self.root, trash)
        os.replace(other.root, self.root)
        shutil.rmtree(trash, ignore_errors=True)

    def delete(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for suffix in (".old", ".new"):
            shutil.rmtree(self.root.with_name(self.root.name + suffix), ignore_errors=True)
        Path(str(self.root) + ".lock").unlink(missing_ok=True)


def nlist_of(index) -> int:
    return int(_faiss().extract_index_ivf(index).nlist)
