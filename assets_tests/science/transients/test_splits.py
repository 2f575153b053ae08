"""Job-level splits: deterministic, leak-free, stable under additions."""

from __future__ import annotations

import hashlib

import pytest

from astro_assets.science.transients.splits import (
    SPLITS,
    assign_split,
    hash_fraction,
    split_counts,
    split_table,
)


def _jids(n, start=0):
    return [f"jid{i:05d}" for i in range(start, start + n)]


def test_hash_is_sha256_of_seed_and_jid():
    digest = hashlib.sha256(b"7:jid001").digest()
    assert hash_fraction("jid001", seed=7) == int.from_bytes(digest[:8], "big") / 2**64


def test_assignment_follows_the_cumulative_fractions():
    for jid in _jids(50):
        u = hash_fraction(jid, seed=3)
        expected = "train" if u < 0.7 else "validation" if u < 0.85 else "test"
        assert assign_split(jid, seed=3) == expected


def test_fractions_are_honoured_on_many_jobs():
    counts = split_counts(split_table(_jids(4000), seed=1))
    # Binomial standard deviation for 4000 jobs is at most 0.8 %; allow 4 of them.
    assert counts["train"] / 4000 == pytest.approx(0.70, abs=0.03)
    assert counts["validation"] / 4000 == pytest.approx(0.15, abs=0.03)
    assert counts["test"] / 4000 == pytest.approx(0.15, abs=0.03)


def test_deterministic_and_seed_dependent():
    jids = _jids(200)
    assert split_table(jids, seed=5) == split_table(list(reversed(jids)), seed=5)
    assert split_table(jids, seed=5) != split_table(jids, seed=6)


def test_every_job_in_exactly_one_split():
    table = split_table(_jids(300))
    assert set(table) == set(_jids(300))
    members = {name: {j for j, s in table.items() if s == name} for name in SPLITS}
    assert sum(len(m) for m in members.values()) == 300
    assert not (members["train"] & members["validation"])
    assert not (members["train"] & members["test"])
    assert not (members["validation"] & members["test"])


def test_adding_jobs_never_moves_existing_ones():
    before = split_table(_jids(100))
    after = split_table(_jids(100) + _jids(250, start=100))
    assert {jid: after[jid] for jid in before} == before


def test_pure_hash_matches_assign_split():
    jids = _jids(5)
    table = split_table(jids, ensure_nonempty=False, seed=2)
    assert table == {jid: assign_split(jid, seed=2) for jid in jids}


@pytest.mark.parametrize("n_jobs", range(3, 11))
@pytest.mark.parametrize("seed", range(6))
def test_small_datasets_get_every_split_with_minimal_moves(n_jobs, seed):
    jids = _jids(n_jobs)
    pure = split_table(jids, seed=seed, ensure_nonempty=False)
    repaired = split_table(jids, seed=seed)
    assert all(count >= 1 for count in split_counts(repaired).values())
    empty_by_hash = sum(1 for count in split_counts(pure).values() if count == 0)
    moved = sum(1 for jid in jids if pure[jid] != repaired[jid])
    assert moved == empty_by_hash


def test_zero_fraction_split_stays_empty():
    table = split_table(_jids(5), fractions=(0.8, 0.2, 0.0))
    counts = split_counts(table)
    assert counts["test"] == 0 and counts["train"] >= 1 and counts["validation"] >= 1


def test_fewer_jobs_than_splits_uses_the_pure_hash():
    jids = _jids(2)
    assert split_table(jids) == split_table(jids, ensure_nonempty=False)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [((0.5, 0.5), "one value per split"), ((0.7, 0.2, 0.2), "sum to 1"), ((1.1, -0.1, 0), ">= 0")],
)
def test_invalid_fractions(fractions, message):
    with pytest.raises(ValueError, match=message):
        assign_split("jid001", fractions=fractions)


def test_invalid_job_ids():
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        split_table(["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty string"):
        assign_split("")


def test_input_is_not_modified():
    jids = _jids(4)
    before = list(jids)
    split_table(jids)
    assert jids == before
