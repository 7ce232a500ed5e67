"""The name of a feature set: which backbones' vectors, concatenated in which order ("lite0+lite2")."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True)
class FeatureKey:
    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.parts or any(not _PART.fullmatch(p) for p in self.parts) or len(set(self.parts)) != len(self.parts):
            raise ValueError(f"not a feature key: {'+'.join(self.parts)!r}")

    @classmethod
    def parse(cls, key: str) -> FeatureKey:
        """ "lite0+lite2" → FeatureKey(("lite0", "lite2")); ValueError for anything else."""
        return cls(tuple(str(key).split("+")))

    @classmethod
    def of(cls, parts) -> FeatureKey:
        return cls(tuple(parts))

    @property
    def combined(self) -> bool:
        return len(self.parts) > 1

    def __str__(self) -> str:
        return "+".join(self.parts)

    def __iter__(self):
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)
