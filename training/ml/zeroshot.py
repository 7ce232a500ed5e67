"""Zero-shot: label names → ImageNet-1k classes through WordNet, and a head that sums the backbone's
ImageNet softmax over each label's classes.

The map (wordnet/imagenet_wordnet.json.gz, built by scripts/build_wordnet_map.py from WordNet 3.0) ships
with the code: nothing is read from the system or downloaded at run time. A name is looked up like
WordNet's morphy does (case, spaces, plurals, irregular plurals); among its noun senses that reach
ImageNet classes the most common one wins, and the name is "ambiguous" when another such sense
means different classes.

Names with no ImageNet class of their own fall back, and say so (``via``, ``approximate``):
- a WordNet noun close below a concrete class-bearing synset takes that synset's classes
  ("sneaker" → shoe, "deer" → ruminant; the map's "near" entries, most common sense only);
- "a/b" or "a, b" takes the first alternative that maps ("T-shirt/top" → T-shirt);
- a compound WordNet does not know takes its last word, English's head noun ("ankle boot" → boot),
  when that word has classes of its own, unless WordNet knows the compound as something else
  ("x-ray" stays unmapped).
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np

MAP_FILE = Path(__file__).parent / "wordnet" / "imagenet_wordnet.json.gz"

#: Stored vectors are L2-normalised; the ImageNet head wants the raw pooled features. Their norm
#: varies little (hymenoptera val: lite2 11.6 ± 1.9, lite0 14.8 ± 1.9), so the mean norm restores the
#: logits' scale: the same ant/bee accuracy as the exact logits there (0.987 lite2, 0.974 lite0), and
#: one formula for stored samples and new images alike.
FEATURE_SCALE = {"lite0": 14.8, "lite2": 11.6}

#: A multi-label project's per-label sum of the softmax counts as present from this value.
MULTI_LABEL_THRESHOLD = 0.25

# WordNet's morphy detachment rules for nouns (wn/src/morph.c).
_NOUN_SUFFIXES = [
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
]


@dataclass(frozen=True)
class Mapping:
    """A label name's ImageNet classes (indices in model output order)."""

    lemma: str
    wordnet_id: str  # "n02206856"
    words: tuple[str, ...]
    definition: str
    classes: tuple[int, ...]
    ambiguous: bool
    other_senses: tuple[str, ...] = field(default=())  # the other senses' words, for the page
    via: str = ""  # the word whose classes these are, when not the name itself ("boot" for "ankle boot")
    approximate: bool = False  # a broader meaning stands in: no ImageNet class is the name itself


@cache
def _map() -> dict:
    with gzip.open(MAP_FILE, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _candidates(name: str) -> list[str]:
    """The lemma forms to try for a label name, most literal first."""
    base = re.sub(r"\s+", " ", str(name).strip().lower())
    if not base:
        return []
    forms = []
    for f in (
        base.replace(" ", "_"),
        base.replace(" ", "_").replace("-", "_"),
        base.replace("-", "_").replace(" ", ""),
    ):
        if f not in forms:
            forms.append(f)
    out = []
    exceptions = _map()["exceptions"]
    for form in forms:
        out.append(form)
        if form in exceptions:
            out.append(exceptions[form])
        for suffix, ending in _NOUN_SUFFIXES:
            if form.endswith(suffix) and len(form) > len(suffix) + 1:
                out.append(form[: -len(suffix)] + ending)
    seen, unique = set(), []
    for f in out:
        if f not in seen:
            seen.add(f)
            unique.append(f)
    return unique


def _direct(name: str, *, near: bool = True) -> Mapping | None:
    """The name's own WordNet senses that reach ImageNet classes, or (``near``) its near ancestor's."""
    data = _map()
    for lemma in _candidates(name):
        senses = data["lemmas"].get(lemma)
        if senses:
            first = data["synsets"][str(senses[0])]
            classes = tuple(first["classes"])
            others = []
            for offset in senses[1:]:
                synset = data["synsets"][str(offset)]
                if tuple(synset["classes"]) != classes:
                    others.append(", ".join(synset["words"]))
            return Mapping(
                lemma=lemma,
                wordnet_id=f"n{senses[0]:08d}",
                words=tuple(first["words"]),
                definition=first["gloss"],
                classes=classes,
                ambiguous=bool(others),
                other_senses=tuple(others),
            )
        ancestor = data["near"].get(lemma) if near else None
        if ancestor is not None:
            synset = data["synsets"][str(ancestor)]
            return Mapping(
                lemma=lemma,
                wordnet_id=f"n{ancestor:08d}",
                words=tuple(synset["words"]),
                definition=synset["gloss"],
                classes=tuple(synset["classes"]),
                ambiguous=False,
                via=synset["words"][0],
                approximate=True,
            )
    return None


def _known_compound(name: str) -> bool:
    compounds = _compounds()
    return any(form in compounds for form in _candidates(name))


@cache
def _compounds() -> frozenset[str]:
    return frozenset(_map()["compounds"])


def label_map(name: str) -> Mapping | None:
    """The ImageNet classes a label name means, or None when WordNet knows no such noun with any."""
    found = _direct(name)
    if found is not None:
        return found
    text = re.sub(r"\s+", " ", str(name).strip().lower())
    alternatives = [a.strip() for a in re.split(r"/|,|\bor\b", text) if a.strip()]
    if len(alternatives) > 1:
        for alternative in alternatives:
            found = label_map(alternative)
            if found is not None:
                return replace(found, via=found.via or alternative)
        return None
    words = [w for w in re.split(r"[\s_-]+", text) if w]
    if len(words) > 1 and not _known_compound(text):
        # the head's own classes only: one approximation at a time ("baby back ribs" is no support)
        found = _direct(words[-1], near=False)
        if found is not None:
            return replace(found, via=found.via or words[-1], approximate=True)
    return None


def class_owners(mappings: list[Mapping | None]) -> list[list[int]]:
    """Each label's own classes: a class two labels share goes to the more specific one ("dog" and
    "golden retriever": the retriever class is the retriever's), so no probability is counted
    twice. An unmapped label owns nothing."""
    sizes = [len(m.classes) if m is not None else 0 for m in mappings]
    owner: dict[int, int] = {}
    for i, m in enumerate(mappings):
        for c in m.classes if m is not None else ():
            j = owner.get(c)
            if j is None or sizes[i] < sizes[j]:
                owner[c] = i
    return [sorted(c for c, i in owner.items() if i == n) for n in range(len(mappings))]


def class_groups(mappings: list[Mapping | None]) -> list[list[int]] | None:
    """Each label's classes for the zero-shot head, None unless every label maps (two at least) and
    keeps a class of its own (class_owners)."""
    if len(mappings) < 2 or any(m is None for m in mappings):
        return None
    groups = class_owners(mappings)
    return groups if all(groups) else None


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class ZeroShotHead:
    """Label scores from L2-normalised backbone features: the ImageNet head's softmax summed over
    each label's classes; renormalised over the labels (single-label) or kept as is (multi-label,
    compared with MULTI_LABEL_THRESHOLD)."""

    W: np.ndarray  # (1000, D) ImageNet classifier
    b: np.ndarray  # (1000,)
    groups: list[list[int]]
    multi_label: bool
    scale: float

    def imagenet_probs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return _softmax((X * self.scale) @ self.W.T + self.b)

    #: Rows per block: the (rows, 1000) ImageNet softmax and its temporaries stay a few tens of MB
    #: however many samples are scored (every labeled sample is, after each quick retrain).
    CHUNK = 4096

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.shape[0] > self.CHUNK:
            return np.concatenate([self.predict_proba(X[s : s + self.CHUNK]) for s in range(0, X.shape[0], self.CHUNK)])
        p = self.imagenet_probs(X)
        scores = np.stack([p[:, g].sum(axis=1) for g in self.groups], axis=1)
        if self.multi_label:
            return np.clip(scores, 0.0, 1.0).astype(np.float32)
        return _renormalised(scores)


def _renormalised(scores: np.ndarray) -> np.ndarray:
    """Rows summing to 1 over the labels; a row with nothing of any label's classes at all is an honest
    "don't know" (uniform), not a division by zero."""
    total = scores.sum(axis=1, keepdims=True)
    uniform = np.full_like(scores, 1.0 / scores.shape[1])
    return np.where(total > 1e-12, scores / np.maximum(total, 1e-12), uniform).astype(np.float32)


def label_columns(probs: np.ndarray, columns: list[int], *, multi_label: bool) -> np.ndarray:
    """The zero-shot answers over some of its labels (those a trained model knows): single-label rows
    renormalised over them, as if the head had only those labels."""
    picked = np.asarray(probs, dtype=np.float32)[:, columns]
    return picked if multi_label else _renormalised(picked)


def groups_to_bytes(*, groups: list[list[int]], backbone: str, multi_label: bool) -> bytes:
    """The zero-shot version's artifact: which classes each label sums (the weights stay in the package)."""
    return json.dumps({"groups": groups, "backbone": backbone, "multi_label": multi_label}).encode()


def groups_from_bytes(data: bytes) -> dict:
    return json.loads(data.decode())


#: Below this accuracy on the labeled samples the zero-shot model gives way to any trained model.
#: A held-out estimate of a model trained on a label or two per class is far below what that model
#: scores once it trains on all of them (Fashion-MNIST without "shirt", 10 labels of 9 classes:
#: leave-one-out 0.0-0.75 on the labels that have two examples, 0.71 on the test split), so a
#: comparison there favours the zero-shot model (0.38 on test, 0.2-0.5 on the labeled samples).
#: Quick models at 10 labels scored 0.55 (digits) to 0.95 (hymenoptera) on bench/learning.py's sets.
WEAK_ZERO_SHOT = 0.5


def trained_beats_zero_shot(
    *,
    y: np.ndarray,
    trained: np.ndarray | None,
    zero_shot: np.ndarray,
    multi_label: bool,
    thresholds: np.ndarray | None = None,
    zero_shot_threshold: float = MULTI_LABEL_THRESHOLD,
) -> bool:
    """Whether a trained model should answer instead of the zero-shot one, judged on the labeled
    samples: ``trained`` are its held-out (out-of-fold) probabilities, None when too few labels
    could be held out; ``zero_shot`` the zero-shot model's on the same rows and label columns (it
    never trained on them, so its accuracy there is an honest estimate).

    A zero-shot model right on fewer than ``WEAK_ZERO_SHOT`` of the labeled samples gives way.
    Otherwise, single-label, only the rows whose label has at least two examples count: leaving out
    the only example of a label makes the trained model miss it by construction. The trained model
    must score strictly better on those rows, or better than the zero-shot's accuracy on every
    labeled row (a tie on two rows is no evidence). Ties, and no comparable row, keep the zero-shot
    model. Measured on hymenoptera (zero-shot 0.987) and Fashion-MNIST without "shirt" (0.38):
    bench/out/zero_shot.md.
    """
    y = np.asarray(y)
    Z = np.asarray(zero_shot, dtype=np.float32)
    if Z.ndim != 2 or Z.shape[0] != y.shape[0] or Z.shape[0] == 0:
        raise ValueError(f"shapes disagree: y {y.shape}, zero-shot {Z.shape}")
    P = None if trained is None else np.asarray(trained, dtype=np.float32)
    if P is not None and P.shape != Z.shape:
        raise ValueError(f"shapes disagree: trained {P.shape}, zero-shot {Z.shape}")
    if multi_label:
        truth = y > 0.5
        theirs = float(((Z >= zero_shot_threshold) == truth).all(axis=1).mean())
        if theirs < WEAK_ZERO_SHOT or P is None:
            return theirs < WEAK_ZERO_SHOT
        t = np.full(P.shape[1], 0.5, np.float32) if thresholds is None else np.asarray(thresholds, np.float32)
        return bool(((P >= t) == truth).all(axis=1).mean() > theirs)
    y = y.astype(np.int64)
    theirs_all = float((Z.argmax(axis=1) == y).mean())
    if theirs_all < WEAK_ZERO_SHOT:
        return True
    comparable = np.bincount(y, minlength=Z.shape[1])[y] >= 2
    if P is None or not comparable.any():
        return False
    ours = float((P[comparable].argmax(axis=1) == y[comparable]).mean())
    theirs_comparable = float((Z[comparable].argmax(axis=1) == y[comparable]).mean())
    return ours > min(theirs_comparable, theirs_all)
