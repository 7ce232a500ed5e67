"""Build training/ml/wordnet/imagenet_wordnet.json.gz: label names → ImageNet-1k classes via WordNet 3.0.

Run once by a maintainer (the output is committed, so nothing is read or downloaded at run time):

    apt-get install wordnet-base          # Debian's WordNet 3.0, /usr/share/wordnet
    .venv/bin/python scripts/build_wordnet_map.py

ImageNet-1k's classes are WordNet 3.0 noun synsets (wnid n02206856 = data.noun offset 02206856);
timm ships their ids in model output order. For every synset that has ImageNet classes in its
hyponym closure (the class itself included) the map keeps those class indices, and for every noun
lemma with such a sense its senses in WordNet's frequency order (index.noun), so the runtime can
pick the most common sense and tell when another sense means different classes. noun.exc's
irregular plurals come along for the ones whose base is kept.

A noun with no ImageNet class below it gets an approximate mapping ("near") when its most common
sense is at most NEAR_STEPS hypernym steps below a concrete synset (under "physical entity") with at
most NEAR_MAX_CLASSES classes, and it is not an adjective too: "sneaker" is a shoe, "deer" a
ruminant, but "bubbly" (champagne, or full of bubbles) is left alone. WordNet compounds that map
to nothing themselves ("x-ray") are listed too, so that the runtime's
head-noun fallback ("ankle boot" → "boot", for names WordNet does not know) leaves them unmapped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "training" / "ml" / "wordnet" / "imagenet_wordnet.json.gz"
GLOSS_CHARS = 80
NEAR_STEPS = 2
NEAR_MAX_CLASSES = 20
PHYSICAL_ENTITY = 1930  # n00001930


def _imagenet_offsets() -> list[int]:
    import timm.data

    path = Path(timm.data.__file__).parent / "_info" / "imagenet_synsets.txt"
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(wnids) != 1000 or any(not w.startswith("n") for w in wnids):
        raise SystemExit(f"unexpected ImageNet synset list in {path}")
    return [int(w[1:]) for w in wnids]


def _data_noun(path: Path) -> dict[int, dict]:
    """offset → {"words", "hypernyms", "gloss"} (hypernyms: @ and @i pointers)."""
    synsets = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        head, _, gloss = line.partition(" | ")
        f = head.split()
        offset, w_cnt = int(f[0]), int(f[3], 16)
        words = [f[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
        i = 4 + 2 * w_cnt
        p_cnt = int(f[i])
        hypernyms = []
        for j in range(p_cnt):
            symbol, target, pos = f[i + 1 + 4 * j : i + 4 + 4 * j]
            if symbol in ("@", "@i") and pos == "n":
                hypernyms.append(int(target))
        synsets[offset] = {"words": words, "hypernyms": hypernyms, "gloss": gloss.strip()}
    return synsets


def _index(path: Path) -> dict[str, list[int]]:
    lemmas = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        f = line.split()
        lemma, synset_cnt, p_cnt = f[0], int(f[2]), int(f[3])
        offsets = f[4 + p_cnt + 2 :]
        if len(offsets) != synset_cnt:
            raise SystemExit(f"cannot parse {path.name} line: {line[:80]}")
        lemmas[lemma] = [int(o) for o in offsets]
    return lemmas


def build(wordnet: Path) -> dict:
    classes = _imagenet_offsets()
    synsets = _data_noun(wordnet / "data.noun")
    hits: dict[int, set[int]] = {}
    for index, offset in enumerate(classes):
        stack, seen = [offset], set()
        while stack:  # the class and all its ancestors
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            hits.setdefault(node, set()).add(index)
            stack.extend(synsets[node]["hypernyms"])
    index = _index(wordnet / "index.noun")
    lemmas = {
        lemma: [o for o in offsets if o in hits] for lemma, offsets in index.items() if any(o in hits for o in offsets)
    }
    physical = _below(synsets, PHYSICAL_ENTITY)
    # An adjective too ("bubbly", "banded": texture names) is more likely meant as one.
    adjectives = set(_index(wordnet / "index.adj"))
    near = {}
    for lemma, offsets in index.items():
        if lemma in lemmas or lemma in adjectives:
            continue
        ancestor = _near(synsets, hits, physical, offsets[0])
        if ancestor is not None:
            near[lemma] = ancestor
    # Every one, whatever its last word: the runtime strips plurals from the head ("bill gates",
    # "can of worms"), so a filter on the literal last word here would miss some.
    compounds = sorted(
        lemma for lemma in index if lemma not in lemmas and lemma not in near and re.search(r"[_-]", lemma)
    )
    used = {o for offsets in lemmas.values() for o in offsets} | set(near.values())
    exceptions = {}
    for line in (wordnet / "noun.exc").read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if len(parts) >= 2 and (parts[1] in lemmas or parts[1] in near) and parts[0] not in lemmas:
            exceptions[parts[0]] = parts[1]
    gloss = lambda g: g if len(g) <= GLOSS_CHARS else g[: GLOSS_CHARS - 1].rsplit(" ", 1)[0] + "…"  # noqa: E731
    return {
        "source": "WordNet 3.0 (Princeton University), noun synsets; ImageNet-1k ids from timm",
        "license": (wordnet.parent / "doc" / "wordnet-base" / "copyright").read_text()
        if (wordnet.parent / "doc" / "wordnet-base" / "copyright").exists()
        else "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.",
        "synsets": {
            str(o): {"classes": sorted(hits[o]), "words": synsets[o]["words"][:3], "gloss": gloss(synsets[o]["gloss"])}
            for o in sorted(used)
        },
        "lemmas": lemmas,
        "near": near,
        "compounds": compounds,
        "exceptions": exceptions,
    }


def _below(synsets: dict[int, dict], root: int) -> set[int]:
    """Every synset with ``root`` among its ancestors (itself included)."""
    children: dict[int, list[int]] = {}
    for offset, synset in synsets.items():
        for parent in synset["hypernyms"]:
            children.setdefault(parent, []).append(offset)
    out, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node not in out:
            out.add(node)
            stack.extend(children.get(node, []))
    return out


def _near(synsets: dict[int, dict], hits: dict[int, set[int]], physical: set[int], offset: int) -> int | None:
    """The closest ancestor (at most NEAR_STEPS up) that has ImageNet classes, if it is concrete and
    narrow enough to stand for the name; the narrowest when one level has several."""
    level = [offset]
    for _ in range(NEAR_STEPS):
        level = [h for node in level for h in synsets[node]["hypernyms"]]
        found = [h for h in level if h in hits]
        if found:
            best = min(found, key=lambda h: (len(hits[h]), h))
            ok = best in physical and len(hits[best]) <= NEAR_MAX_CLASSES
            return best if ok else None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = build(args.wordnet)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0: the same WordNet gives the same bytes, so a rebuild shows no spurious diff
    with open(args.out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    print(
        f"{args.out}: {len(data['lemmas'])} lemmas, {len(data['near'])} near, {len(data['synsets'])} synsets, {args.out.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
