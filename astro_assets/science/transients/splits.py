"""Train / validation / test splits by job, from a seeded hash of the job id.

Candidates of one job share its images, so splitting candidates would leak: the split unit is
the job. Each job id is hashed with SHA-256 (seeded, independent of Python's randomized
``hash``) to a number ``u`` in [0, 1); the cumulative fractions cut [0, 1) into the splits. A
job's split therefore depends only on its id, the seed and the fractions, never on which other
jobs exist: adding jobs never moves an existing one.

Small datasets: with a handful of jobs, the pure hash can leave a requested split empty (three
jobs all land in "train" with probability 0.7**3 = 34 %). :func:`split_table` then repairs the
assignment minimally: for each empty split it moves the one job, taken from a split that keeps
at least one job, whose ``u`` lies nearest to the empty split's interval. The trade-off: this
repair depends on the set of jobs, so adding jobs later can undo it (the moved job returns to
its hash split). That only happens while a split was empty by hash, i.e. for tiny datasets, and
:func:`astro_assets.science.transients.croissant.semver_for` turns such a move into a major
version bump. Pass ``ensure_nonempty=False`` for the pure, addition-stable assignment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["SPLITS", "assign_split", "hash_fraction", "split_counts", "split_table"]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""Split names, in the order of the ``fractions`` arguments."""


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != len(SPLITS):
        raise ValueError(
            f"fractions must give one value per split {SPLITS}, got {len(values)} values"
        )
    if any(not f >= 0 for f in values) or abs(sum(values) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {values} (sum {sum(values)})")
    return values  # type: ignore[return-value]


def hash_fraction(jid: str, *, seed: int = 0) -> float:
    """The seeded hash of ``jid`` as a number in [0, 1).

    SHA-256 of ``"<seed>:<jid>"`` (UTF-8); the first 8 bytes as an unsigned integer / 2**64.
    """
    if not isinstance(jid, str) or not jid:
        raise ValueError(f"a job id must be a non-empty string, got {jid!r}")
    digest = hashlib.sha256(f"{int(seed)}:{jid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _split_of(u: float, fractions: tuple[float, float, float]) -> str:
    cumulative = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=True):
        cumulative += fraction
        if u < cumulative:
            return name
    # Rounding can leave u >= the final cumulative sum; it belongs to the last non-empty split.
    return next(name for name, f in zip(SPLITS[::-1], fractions[::-1], strict=True) if f > 0)


def assign_split(jid: str, *, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> str:
    """The split of one job: ``"train"``, ``"validation"`` or ``"test"``.

    Parameters
    ----------
    jid : str
        Job id (the job folder name).
    seed : int
        Changes the whole assignment; keep it fixed for a dataset's lifetime.
    fractions : sequence of 3 floats
        Expected fractions of jobs in train, validation, test; >= 0, summing to 1.

    Returns
    -------
    str
        Depends only on ``jid``, ``seed`` and ``fractions``.
    """
    return _split_of(hash_fraction(jid, seed=seed), _check_fractions(fractions))


def _distance_to_interval(u: float, low: float, high: float) -> float:
    if u < low:
        return low - u
    if u >= high:
        return u - high
    return 0.0


def split_table(
    jids: Iterable[str],
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    ensure_nonempty: bool = True,
) -> dict[str, str]:
    """Assign every job to a split.

    Parameters
    ----------
    jids : iterable of str
        Distinct job ids.
    seed, fractions
        As :func:`assign_split`.
    ensure_nonempty : bool
        If True (default), every split with a fraction > 0 gets at least one job whenever
        there are at least as many jobs as such splits, by the minimal repair described in the
        module docstring. If False, the pure hash assignment.

    Returns
    -------
    dict
        Job id -> split name, ordered by job id.

    Raises
    ------
    ValueError
        If a job id is repeated or empty, or the fractions are invalid.
    """
    jid_list = list(jids)
    duplicates = sorted({jid for jid in jid_list if jid_list.count(jid) > 1})
    if duplicates:
        raise ValueError(f"job ids must be unique, repeated: {duplicates}")
    checked = _check_fractions(fractions)
    hashes = {jid: hash_fraction(jid, seed=seed) for jid in sorted(jid_list)}
    table = {jid: _split_of(u, checked) for jid, u in hashes.items()}
    requested = [name for name, f in zip(SPLITS, checked, strict=True) if f > 0]
    if not ensure_nonempty or len(table) < len(requested):
        return table
    bounds = {}
    low = 0.0
    for name, fraction in zip(SPLITS, checked, strict=True):
        bounds[name] = (low, low + fraction)
        low += fraction
    for empty in requested:
        members = {name: [j for j, s in table.items() if s == name] for name in requested}
        if members[empty]:
            continue
        donors = [jid for name, jids_in in members.items() if len(jids_in) > 1 for jid in jids_in]
        nearest = min(donors, key=lambda j: (_distance_to_interval(hashes[j], *bounds[empty]), j))
        table[nearest] = empty
    return table


def split_counts(table: Mapping[str, str]) -> dict[str, int]:
    """Number of jobs per split name (all of ``SPLITS``, zeros included)."""
    counts = dict.fromkeys(SPLITS, 0)
    for name in table.values():
        counts[name] += 1
    return counts
