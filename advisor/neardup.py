"""The near-duplicate index of the data check (advisor/datacheck.py): word shingles, MinHash, LSH bands.

MinHash (Broder 1997, "On the resemblance and containment of documents") over word shingles of the
normalised text, candidates from LSH banding (Leskovec, Rajaraman, Ullman, *Mining of Massive Datasets*,
ch. 3.4), each candidate pair confirmed by its MinHash-estimated Jaccard similarity against the
threshold. The library is rensa (Rust MinHash, ~18x faster than datasketch here: see
benchmarks/data_check.py, which measures both). Only the signatures are kept, never the texts. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MINHASH_SEED = 1729  # fixed: the same file gives the same groups (the summary goes into a hashed plan)


@dataclass(frozen=True)
class NearGroup:
    lines: list[int]
    similarity: float  # the lowest MinHash-estimated Jaccard similarity among the group's confirmed pairs


def shingles(text: str, k: int) -> list[str]:
    """The word k-grams of ``text`` (repeats kept: MinHash takes a minimum, so they change nothing)."""
    words = text.split()
    if len(words) <= k:
        return [" ".join(words)]
    return list(map(" ".join, zip(*(words[i:] for i in range(k)))))


def lsh_bands(threshold: float, num_perm: int) -> int:
    """The LSH band count: the fewest bands (most rows per band, fewest false candidates) whose
    probability of making a pair at exactly ``threshold`` a candidate, 1 - (1 - s^r)^b, is >= 0.99
    (Mining of Massive Datasets, 3.4.2). False candidates cost only a similarity check."""
    bands = 1
    while bands <= num_perm:
        if num_perm % bands == 0:
            r = num_perm // bands
            if 1 - (1 - threshold ** r) ** bands >= 0.99:
                return bands
        bands *= 2
    return num_perm


class MinHasher:
    """A MinHash LSH index of texts by key (a line number): signatures only, never the texts."""

    def __init__(self, threshold: float, shingle_words: int, num_perm: int):
        from rensa import RMinHash, RMinHashLSH  # lazy: only the data check needs it

        self._new = lambda: RMinHash(num_perm=num_perm, seed=MINHASH_SEED)
        self._lsh = RMinHashLSH(threshold=threshold, num_perm=num_perm, num_bands=lsh_bands(threshold, num_perm))
        self.threshold, self.k = threshold, shingle_words
        self.sigs: dict[int, Any] = {}

    def signature(self, text: str):
        m = self._new()
        m.update(shingles(text, self.k))
        return m

    def matches(self, sig) -> list[tuple[int, float]]:
        """(key, estimated Jaccard) of stored signatures at or above the threshold."""
        out = []
        for key in self._lsh.query(sig):
            sim = sig.jaccard(self.sigs[key])
            if sim >= self.threshold:
                out.append((key, sim))
        return out

    def add(self, key: int, sig) -> None:
        self._lsh.insert(key, sig)
        self.sigs[key] = sig


def near_groups(edges: dict[int, list[tuple[int, float]]]) -> list[NearGroup]:
    """Union-find over confirmed pairs: groups sorted by first line, the group similarity its weakest pair."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, pairs in edges.items():
        for b, _ in pairs:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for x in list(parent):
        members.setdefault(find(x), []).append(x)
    low: dict[int, float] = {}
    for a, pairs in edges.items():
        for _, sim in pairs:
            r = find(a)
            low[r] = min(low.get(r, 1.0), sim)
    return [NearGroup(sorted(m), round(low[r], 3)) for r, m in sorted(members.items())]
