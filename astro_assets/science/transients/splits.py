"""Train / validation / test splits by job, from a seeded hash of the job id.

Candidates of one job share its images, so splitting candidates would leak: the split unit is
the job. Jobs of one sky field (repeated epochs, overlapping pointings) share stars and
artefacts too, and a model tested on a field it was trained on scores better than on a new
one; :func:`split_groups` names such groups from the job ids with a regular expression, and
:func:`split_table` then keeps each group in one split, the group's key taking the job id's
place below. Each job id is hashed with SHA-256 (seeded, independent of Python's randomized
``hash``) to a number ``u`` in [0, 1); the cumulative fractions cut [0, 1) into the splits. A
job's split therefore depends only on its id, the seed and the fractions, never on which other
jobs exist: adding jobs never moves an existing one.

Small datasets: with a handful of jobs, the pure hash can leave a requested split empty (three
jobs all land in "train" with probability 0.7**3 = 34 %). :func:`split_table` then repairs the
assignment minimally: for each empty split it moves the one job (or group), taken from a split
that keeps at least one, whose ``u`` lies nearest to the empty split's interval. The trade-off: this
repair depends on the set of jobs, so adding jobs later can undo it (the moved job returns to
its hash split). That only happens while a split was empty by hash, i.e. for tiny datasets, and
:func:`astro_assets.science.transients.croissant.semver_for` turns such a move into a major
version bump. Pass ``ensure_nonempty=False`` for the pure, addition-stable assignment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "SPLITS",
    "assign_split",
    "hash_fraction",
    "split_counts",
    "split_groups",
    "split_table",
]

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


def split_groups(jids: Iterable[str], pattern: str) -> dict[str, str]:
    """The group of each job, named by a regular expression on its id.

    The group's key is the first capturing group that took part in the pattern's first match
    in the job id (:func:`re.search`; so each branch of ``a(..)|b(..)`` may capture its own),
    or the whole match when the pattern has no group: with
    ``r"^(.+)_e\\d+$"``, ``ztf_f714_c05_q2_e1`` and ``ztf_f714_c05_q2_e2`` form the group
    ``ztf_f714_c05_q2``. A job id the pattern does not match is a group of its own, keyed by
    the id.

    Parameters
    ----------
    jids : iterable of str
        Job ids.
    pattern : str
        A Python regular expression.

    Returns
    -------
    dict
        Job id -> group key, for every job.

    Raises
    ------
    ValueError
        If ``pattern`` is not a valid regular expression, matches no job id, or names an
        empty group for some job id (the text its group captured is empty or it did not take
        part in the match): every such job would share one group.
    """
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(
            f"split_group_pattern '{pattern}' is not a valid regular expression ({err}); "
            "write a Python regular expression, e.g. '^(.+)_e\\d+$' to group the epochs "
            "'<field>_e1', '<field>_e2', ..."
        ) from err
    groups: dict[str, str] = {}
    matched = 0
    for jid in jids:
        found = compiled.search(jid)
        if found is None:
            groups[jid] = jid
            continue
        matched += 1
        if compiled.groups:
            key = next((part for part in found.groups() if part is not None), "")
        else:
            key = found.group(0)
        if not key:
            raise ValueError(
                f"split_group_pattern '{pattern}' names an empty group for job {jid!r}: "
                "every job matched so would share one group; make the pattern (or its first "
                "group) capture the part of the id that names the field"
            )
        groups[jid] = key
    if groups and not matched:
        examples = ", ".join(repr(jid) for jid in sorted(groups)[:3])
        raise ValueError(
            f"split_group_pattern '{pattern}' matches none of the {len(groups)} job ids "
            f"(e.g. {examples}), so it groups nothing; correct the pattern, or leave it unset "
            "to split job by job"
        )
    return groups


def split_table(
    jids: Iterable[str],
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    ensure_nonempty: bool = True,
    groups: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Assign every job to a split.

    Parameters
    ----------
    jids : iterable of str
        Distinct job ids.
    seed, fractions
        As :func:`assign_split`.
    ensure_nonempty : bool
        If True (default), every split with a fraction > 0 gets at least one job (one group)
        whenever there are at least as many jobs (groups) as such splits, by the minimal repair
        described in the module docstring. If False, the pure hash assignment.
    groups : mapping, optional
        Job id -> group key (:func:`split_groups`); the jobs of a group take one split, the
        one the group's key hashes to, as a job's id does. A job without an entry is its own
        group. None (default): every job is its own group, keyed by its id.

    Returns
    -------
    dict
        Job id -> split name, ordered by job id.

    Raises
    ------
    ValueError
        If a job id is repeated or empty, a group key is empty, or the fractions are invalid.
    """
    jid_list = list(jids)
    duplicates = sorted({jid for jid in jid_list if jid_list.count(jid) > 1})
    if duplicates:
        raise ValueError(f"job ids must be unique, repeated: {duplicates}")
    checked = _check_fractions(fractions)
    group_of = {jid: (groups or {}).get(jid, jid) for jid in jid_list}
    units = _unit_table(sorted(set(group_of.values())), seed, checked, ensure_nonempty)
    return {jid: units[group_of[jid]] for jid in sorted(jid_list)}


def _unit_table(
    units: Sequence[str],
    seed: int,
    checked: tuple[float, float, float],
    ensure_nonempty: bool,
) -> dict[str, str]:
    """The split of each unit (a job id, or a group's key), repaired as in the module
    docstring."""
    hashes = {unit: hash_fraction(unit, seed=seed) for unit in units}
    table = {unit: _split_of(u, checked) for unit, u in hashes.items()}
    requested = [name for name, f in zip(SPLITS, checked, strict=True) if f > 0]
    if not ensure_nonempty or len(table) < len(requested):
        return table
    bounds = {}
    low = 0.0
    for name, fraction in zip(SPLITS, checked, strict=True):
        bounds[name] = (low, low + fraction)
        low += fraction
    for empty in requested:
        members = {name: [u for u, s in table.items() if s == name] for name in requested}
        if members[empty]:
            continue
        donors = [u for name, in_split in members.items() if len(in_split) > 1 for u in in_split]
        nearest = min(donors, key=lambda u: (_distance_to_interval(hashes[u], *bounds[empty]), u))
        table[nearest] = empty
    return table


def split_counts(table: Mapping[str, str]) -> dict[str, int]:
    """Number of jobs per split name (all of ``SPLITS``, zeros included)."""
    counts = dict.fromkeys(SPLITS, 0)
    for name in table.values():
        counts[name] += 1
    return counts
