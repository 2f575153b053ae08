"""Job-level splits: deterministic, leak-free, stable under additions."""

from __future__ import annotations

import hashlib

import pytest

from astro_assets.science.transients.splits import (
    SPLITS,
    assign_split,
    hash_fraction,
    split_counts,
    split_groups,
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


EPOCHS = [f"ztf_f714_c05_q2_e{i}" for i in range(1, 4)] + [
    f"ztf_f{field}_c01_q1_e{epoch}" for field in (300, 301, 302, 303) for epoch in (1, 2)
]
FIELD_OF_EPOCH = r"^(.+)_e\d+$"


def test_without_groups_the_splits_are_those_published_before_groups_existed():
    # Pinned: a dataset published with job-by-job splits keeps them when groups are unset.
    assert split_table([*EPOCHS, "jid001", "jid002", "jid003"]) == {
        "jid001": "train",
        "jid002": "train",
        "jid003": "train",
        "ztf_f300_c01_q1_e1": "test",
        "ztf_f300_c01_q1_e2": "test",
        "ztf_f301_c01_q1_e1": "validation",
        "ztf_f301_c01_q1_e2": "test",
        "ztf_f302_c01_q1_e1": "validation",
        "ztf_f302_c01_q1_e2": "train",
        "ztf_f303_c01_q1_e1": "train",
        "ztf_f303_c01_q1_e2": "validation",
        "ztf_f714_c05_q2_e1": "test",
        "ztf_f714_c05_q2_e2": "train",
        "ztf_f714_c05_q2_e3": "test",
    }
    assert split_table(["a", "b", "c"]) == {"a": "train", "b": "test", "c": "validation"}
    assert split_table(EPOCHS, groups=None) == split_table(EPOCHS)


def test_split_groups_names_each_job_by_the_first_group_or_the_whole_match():
    assert split_groups([*EPOCHS[:2], "jid001"], FIELD_OF_EPOCH) == {
        "ztf_f714_c05_q2_e1": "ztf_f714_c05_q2",
        "ztf_f714_c05_q2_e2": "ztf_f714_c05_q2",
        "jid001": "jid001",
    }
    assert split_groups(["ztf_f714_c05_q2_e1", "ztf_f300_c01_q1_e2"], r"f\d+") == {
        "ztf_f714_c05_q2_e1": "f714",
        "ztf_f300_c01_q1_e2": "f300",
    }


def test_each_branch_of_an_alternation_may_name_the_group():
    pattern = r"^(.+)_e\d+$|^(.+)-v\d+$"
    assert split_groups(["fa_e1", "fa_e2", "fb-v1", "fb-v2"], pattern) == {
        "fa_e1": "fa",
        "fa_e2": "fa",
        "fb-v1": "fb",
        "fb-v2": "fb",
    }


def test_the_jobs_of_a_group_take_the_split_of_the_groups_key():
    groups = split_groups([*EPOCHS, *_jids(20)], FIELD_OF_EPOCH)
    table = split_table([*EPOCHS, *_jids(20)], seed=4, groups=groups, ensure_nonempty=False)
    for jid in EPOCHS:
        field = jid.rsplit("_e", 1)[0]
        assert table[jid] == assign_split(field, seed=4), jid
    for jid in _jids(20):
        assert table[jid] == assign_split(jid, seed=4)


@pytest.mark.parametrize("seed", range(8))
def test_a_small_grouped_dataset_gets_every_split_by_moving_whole_groups(seed):
    groups = split_groups(EPOCHS, FIELD_OF_EPOCH)
    table = split_table(EPOCHS, seed=seed, groups=groups)
    assert all(count >= 1 for count in split_counts(table).values())
    for field in set(groups.values()):
        assert len({table[jid] for jid, key in groups.items() if key == field}) == 1


def test_a_bad_group_pattern_says_what_is_wrong():
    with pytest.raises(ValueError) as raised:
        split_groups(EPOCHS, "(unclosed")
    assert str(raised.value) == (
        "split_group_pattern '(unclosed' is not a valid regular expression (missing ), "
        "unterminated subpattern at position 0); write a Python regular expression, e.g. "
        "'^(.+)_e\\d+$' to group the epochs '<field>_e1', '<field>_e2', ..."
    )
    with pytest.raises(ValueError) as raised:
        split_groups(EPOCHS, r"_epoch(\d+)$")
    assert str(raised.value) == (
        "split_group_pattern '_epoch(\\d+)$' matches none of the 11 job ids (e.g. "
        "'ztf_f300_c01_q1_e1', 'ztf_f300_c01_q1_e2', 'ztf_f301_c01_q1_e1'), so it groups "
        "nothing; correct the pattern, or leave it unset to split job by job"
    )
    with pytest.raises(ValueError) as raised:
        split_groups(EPOCHS, r"^(x?)ztf")
    assert str(raised.value) == (
        "split_group_pattern '^(x?)ztf' names an empty group for job 'ztf_f714_c05_q2_e1': "
        "every job matched so would share one group; make the pattern (or its first group) "
        "capture the part of the id that names the field"
    )
