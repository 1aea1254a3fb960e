"""A catalogue made ready for many requests with one set of weights: what every playlist would
otherwise rebuild from the whole library before it picks its first track.

`similar_playlist` on its own weights the (N, D) matrix, computes each track's difference from
the seed and walks every recording group for its preferred copy: at 100,000 tracks about 65 ms,
nearly all of it the same for every request. A `Space` keeps the weighted matrix, each row's
squared norm and the copy/suspect/duration masks, built once per library change (the HTTP API's
TrackIndex, the radio's index), so that a request costs one matrix-vector product, an
argpartition and the rules on the shortlist.

The product runs on a float32 copy of the matrix (half the memory traffic of float64: at 100,000
tracks the product is bound by reading the matrix) and without BLAS (numpy's einsum: OpenBLAS's
threads, woken for every small product by many request threads at once, cost more than the
product on a busy two-core server). The answers are still the plain path's: the product
gives every track's distance to within a bound, and `Distances.refine` recomputes the shortlisted
tracks exactly as the plain path does (the same float64 operations on the same numbers), after
checking that no track left out could, within the bound, be nearer than the last one let in.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from tunescout.playlists.catalogue import Catalogue, IntArray
from tunescout.playlists.request import Rules
from tunescout.playlists.steps import squared_distances
from tunescout.playlists.vectors import FloatArray, column_weights

ROUNDING = 1e-5  # bound on the product's error relative to |x|² + |seed|²: float32 carries 6e-8 per
# value, ~D times that in the worst case (D ≈ 60); the exact recomputation never relies on it
MARGIN_SHARE = 0.25  # the product's shortlist is this much longer than asked, so the check rarely fails
MARGIN_MIN = 64

MaskKey = tuple[tuple[str, ...], bool, float]


def weighted_matrix(cat: Catalogue, weights: Mapping[str, float]) -> FloatArray:
    """Return the catalogue's vectors with the groups weighted (the plain path's one expression)."""
    return np.asarray(cat.matrix.values * column_weights(cat.matrix.layout, weights), dtype=np.float64)


class Space:
    """The weighted matrix of one catalogue (in float32), its row norms and the masks that do not
    depend on a request's seeds; immutable but for the mask cache (filled on first use, safe
    across threads). Rows are weighted again in float64 when they must be exact (`rows`):
    the matrix is kept once, at half the size of the plain path's."""

    def __init__(self, cat: Catalogue, weights: Mapping[str, float]) -> None:
        self.cat = cat
        self.weights = dict(weights)
        self.factors = column_weights(cat.matrix.layout, weights)
        weighted = weighted_matrix(cat, weights)
        self.norms2 = np.asarray(np.einsum("ij,ij->i", weighted, weighted), dtype=np.float64)
        self.single = np.ascontiguousarray(weighted, dtype=np.float32)  # what the product reads
        self._masks: dict[MaskKey, npt.NDArray[np.bool_]] = {}
        self._lock = threading.Lock()

    def rows(self, rows: IntArray | int) -> FloatArray:
        """Return rows of the weighted matrix in float64: bit for bit the plain path's (elementwise)."""
        return np.asarray(self.cat.matrix.values[rows] * self.factors, dtype=np.float64)

    def serves(self, cat: Catalogue, rules: Rules) -> bool:
        """Tell whether this space answers for `cat` with the rules' weights."""
        return cat is self.cat and dict(rules.weights) == self.weights

    def base_mask(self, rules: Rules) -> npt.NDArray[np.bool_]:
        """Return (a copy of) the preferred copies, less suspect and too-short tracks, as the rules ask."""
        key: MaskKey = (tuple(rules.prefer), rules.include_suspect, rules.min_duration_s)
        mask = self._masks.get(key)
        if mask is None:
            mask = self.cat.copies_used(rules.prefer)
            if not rules.include_suspect:
                mask &= ~self.cat.suspect
            if rules.min_duration_s > 0:
                with np.errstate(invalid="ignore"):
                    mask &= self.cat.duration_s >= rules.min_duration_s  # NaN (unknown) is too short
            with self._lock:
                mask = self._masks.setdefault(key, mask)
        return mask.copy()

    def distances(self, seeds: Sequence[int], seed_weights: FloatArray) -> Distances:
        """Return every track's distance to its nearest seed, by the product: exact after `refine`."""
        return Distances(self, seeds, seed_weights)


class Distances:
    """Each track's (weighted) distance to its nearest seed and which seed that is.

    Computed for all tracks from the norms and one product per seed; `refine(rows)` makes the
    given rows exact, bit for bit what `plain_distances` gives them.
    """

    def __init__(self, space: Space, seeds: Sequence[int], seed_weights: FloatArray) -> None:
        self.space = space
        self.seeds = [int(s) for s in seeds]
        self.seed_weights = seed_weights
        n = len(space.norms2)
        products = [self._product(s) for s in self.seeds]  # unweighted squared distances
        squared = [p / w**2 for p, w in zip(products, seed_weights, strict=True)]
        # the least each track's exact squared distance can be: the product's, less the bound
        lowest = [(p - ROUNDING * (space.norms2 + space.norms2[s])) / w**2
                  for p, s, w in zip(products, self.seeds, seed_weights, strict=True)]
        if len(squared) == 1:  # one seed (every HTTP request): it is every track's nearest
            self.nearest: IntArray = np.zeros(n, dtype=np.intp)
            self.base: FloatArray = np.sqrt(squared[0])
            self.lowest: FloatArray = lowest[0]
        else:
            stacked = np.stack(squared)
            self.nearest = np.argmin(stacked, axis=0)
            self.base = np.sqrt(stacked[self.nearest, np.arange(n)])
            self.lowest = np.min(np.stack(lowest), axis=0)
        self.exact = np.zeros(n, dtype=bool)

    def _product(self, seed: int) -> FloatArray:
        """Return every track's squared distance to `seed` by |x|² - 2 x·s + |s|² (float32 product)."""
        space = self.space
        dot = np.einsum("ij,j->i", space.single, space.single[seed]).astype(np.float64)
        return np.asarray(np.maximum(space.norms2 - 2.0 * dot + space.norms2[seed], 0.0), dtype=np.float64)

    def refine(self, rows: IntArray) -> None:
        """Recompute `rows` exactly as the plain path does (difference, then sum of squares)."""
        rows = rows[~self.exact[rows]]
        if not rows.size:
            return
        part = self.space.rows(rows)
        squared = np.stack([squared_distances(part, self.space.rows(s)) / weight**2
                            for s, weight in zip(self.seeds, self.seed_weights, strict=True)])
        nearest = np.argmin(squared, axis=0)
        self.nearest[rows] = nearest
        self.base[rows] = np.sqrt(squared[nearest, np.arange(len(rows))])
        self.exact[rows] = True

    def shortlist(self, candidates: IntArray, size: int) -> IntArray:
        """Return the `size` candidates nearest the seeds, exact (the walk's shortlist).

        The nearest size + margin by the product are made exact and the shortlist taken from
        them, unless a candidate left out could, within the bound, be nearer than its last:
        then every candidate is made exact and the shortlist taken from all, as the plain path.
        """
        wanted = size + max(MARGIN_MIN, int(MARGIN_SHARE * size))
        if size >= len(candidates) or wanted >= len(candidates):
            self.refine(candidates)
            return _nearest(candidates, self.base, size)
        order = np.argpartition(self.base[candidates], wanted - 1)
        taken, left = candidates[order[:wanted]], candidates[order[wanted:]]
        self.refine(taken)
        shortlist = _nearest(taken, self.base, size)
        last = float(self.base[shortlist].max()) ** 2
        if float(self.lowest[left].min()) > last:
            return shortlist
        self.refine(candidates)
        return _nearest(candidates, self.base, size)


def _nearest(rows: IntArray, scores: FloatArray, size: int) -> IntArray:
    """Return the `size` rows of the lowest score (all of them when there are no more)."""
    if size >= len(rows):
        return rows
    return rows[np.argpartition(scores[rows], size - 1)[:size]]


def plain_distances(weighted: FloatArray, seeds: Sequence[int],
                    seed_weights: FloatArray) -> tuple[IntArray, FloatArray]:
    """Return (nearest seed, distance to it) per track, the plain way: a difference per seed."""
    squared = np.stack([squared_distances(weighted, weighted[s]) / w**2
                        for s, w in zip(seeds, seed_weights, strict=True)])
    nearest = np.argmin(squared, axis=0)
    return nearest, np.sqrt(squared[nearest, np.arange(len(weighted))])
