"""psfcat.csv validation and the master index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from astro_assets.io.paths import UnsafePathError
from astro_assets.science.transients.candidates import (
    MASTER_INDEX_COLUMNS,
    PSFCAT_COLUMNS,
    SEED_INDEX_COLUMNS,
    IncompletePsfcatError,
    PsfcatFormatError,
    build_master_index,
    label_match_disagreements,
    read_index_csv,
    read_psfcat,
    write_master_index,
)

HEADER = ",".join(PSFCAT_COLUMNS)


def _row(id_=1, x=10.0, y=20.0, label=0, match=-1, mag="-8.5"):
    return f"{id_},{x},{y},0.5,0.01,-0.02,25,310.5,2400.0,{mag},-1.2,0,{match},{label}"


def _write(tmp_path, *rows, header=HEADER, name="psfcat.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_reads_columns_types_and_job_fields(tmp_path):
    path = _write(tmp_path, _row(1, 10.25, 20.5, 1, 7), _row(2, 3.0, 4.0, 0, -1, mag=""))
    frame = read_psfcat(path, jid="jid001", image_shape=(64, 96))

    assert list(frame.columns) == [*SEED_INDEX_COLUMNS, "in_image"]
    expected = {"id": np.int64, "match": pd.Int64Dtype(), "label": np.int64}
    for name in PSFCAT_COLUMNS:
        assert frame[name].dtype == expected.get(name, np.float64), name
    assert frame["id"].tolist() == [1, 2]
    assert frame["x"].tolist() == [10.25, 3.0]
    assert frame["match"].tolist() == [7, -1]
    assert frame["label"].tolist() == [1, 0]
    assert np.isnan(frame["mag"].iloc[1])
    assert frame["jid"].tolist() == ["jid001", "jid001"]
    assert frame["image_filename"].tolist() == ["images/jid001.npy"] * 2
    assert frame["in_image"].tolist() == [True, True]


def test_candidates_outside_the_image_are_kept_and_flagged(tmp_path):
    path = _write(
        tmp_path,
        _row(1, -0.5, 0.0),  # on the outer edge of pixel 0: inside
        _row(2, 95.49, 63.49),  # inside the last pixel
        _row(3, 95.5, 10.0),  # beyond the last column
        _row(4, 10.0, -3.0),
        _row(5, 10.0, 64.0),
    )
    frame = read_psfcat(path, jid="j", image_shape=(64, 96))
    assert frame["in_image"].tolist() == [True, True, False, False, False]


def test_column_names_are_matched_whatever_their_case_and_surrounding_spaces(tmp_path):
    rows = [_row(1, 10.25, 20.5, 1, 7), _row(2, 3.0, 4.0, 0, -1, mag="")]
    expected = read_psfcat(_write(tmp_path, *rows), jid="j", image_shape=(64, 96))
    # As IRAF- and SExtractor-style exports write them, with an extra column in mixed case.
    header = ",".join(
        f" {name.upper()} " if k % 2 else name.upper() for k, name in enumerate(PSFCAT_COLUMNS)
    )
    upper = _write(
        tmp_path,
        *[f"{row},a" for row in rows],
        header=f"{header},Comment",
        name="upper.csv",
    )
    pd.testing.assert_frame_equal(read_psfcat(upper, jid="j", image_shape=(64, 96)), expected)


def test_two_header_fields_naming_one_column_are_refused_naming_them(tmp_path):
    path = _write(tmp_path, f"{_row(1)},1,5", header=f"{HEADER},ID,Label ")
    with pytest.raises(PsfcatFormatError) as raised:
        read_psfcat(path, jid="j", image_shape=(64, 96))
    assert str(raised.value) == (
        f"{path}: header fields that are equal or differ only by case or spaces name the same "
        "column ('id' and 'ID'; 'label' and 'Label '), so which one holds it cannot be told; "
        "rename or remove all but one"
    )
    repeated = _write(tmp_path, f"{_row(1)},7", header=f"{HEADER},x", name="repeated.csv")
    with pytest.raises(PsfcatFormatError) as raised:
        read_psfcat(repeated, jid="j", image_shape=(64, 96))
    assert str(raised.value) == (
        f"{repeated}: header fields that are equal or differ only by case or spaces name the "
        "same column ('x' and 'x'), so which one holds it cannot be told; rename or remove all "
        "but one"
    )


def test_missing_columns_are_all_listed(tmp_path):
    header = HEADER.replace("roundness2,", "").replace(",label", "")
    path = _write(tmp_path, header=header)
    with pytest.raises(PsfcatFormatError, match=r"lacks column\(s\) \['roundness2', 'label'\]"):
        read_psfcat(path, jid="j", image_shape=(8, 8))


def test_non_numeric_value_names_column_and_row(tmp_path):
    bad = _row(2).replace("2400.0", "lots")
    path = _write(tmp_path, _row(1), bad)
    with pytest.raises(
        PsfcatFormatError, match=r"column 'flux', row 1 \(file line 3\): 'lots' is not a number"
    ):
        read_psfcat(path, jid="j", image_shape=(64, 64))


def test_missing_position_is_an_error(tmp_path):
    path = _write(tmp_path, _row(1), _row(2, x=""))
    with pytest.raises(PsfcatFormatError, match=r"column 'x', row 1 .* missing or not finite"):
        read_psfcat(path, jid="j", image_shape=(64, 64))


@pytest.mark.parametrize("missing", ["", "nan"])
def test_a_missing_id_is_refused_alike_by_both_readers(tmp_path, missing):
    path = _write(tmp_path, _row(1), _row(missing))
    message = r"column 'id', row 1 \(file line 3\) is missing; every candidate needs an id: "
    # Each reader says what to do about its own file.
    with pytest.raises(PsfcatFormatError, match=message + "fix the catalog, then materialize"):
        read_psfcat(path, jid="j", image_shape=(64, 64))
    index = build_master_index(
        [read_psfcat(_write(tmp_path, _row(1), _row(2)), jid="j", image_shape=(64, 64))],
        {"j": "train"},
    )
    write_master_index(index, tmp_path / "master_index.csv")
    text = (tmp_path / "master_index.csv").read_text().replace("\n2,j,", f"\n{missing},j,")
    (tmp_path / "master_index.csv").write_text(text)
    with pytest.raises(ValueError, match=message + "the file was edited .*master_index"):
        read_index_csv(tmp_path / "master_index.csv")


def test_the_parquet_twin_is_written_beside_the_csv_by_default(tmp_path):
    frame = read_psfcat(_write(tmp_path, _row(1), _row(2)), jid="j", image_shape=(64, 64))
    index = build_master_index([frame], {"j": "train"})
    written = write_master_index(index, tmp_path / "master_index.csv")
    assert written == [tmp_path / "master_index.csv", tmp_path / "master_index.parquet"]
    assert pd.read_parquet(written[1])["id"].tolist() == index["id"].tolist()


def test_infinite_position_is_an_error(tmp_path):
    path = _write(tmp_path, _row(1, y="inf"))
    with pytest.raises(PsfcatFormatError, match="column 'y', row 0"):
        read_psfcat(path, jid="j", image_shape=(64, 64))


@pytest.mark.parametrize("label", ["2", "0.5", "", "-1"])
def test_labels_must_be_zero_or_one(tmp_path, label):
    path = _write(tmp_path, _row(1), _row(2).rsplit(",", 1)[0] + f",{label}")
    with pytest.raises(PsfcatFormatError, match=r"column 'label', row 1 .* must be 0 \(bogus\)"):
        read_psfcat(path, jid="j", image_shape=(64, 64))


def test_repeated_ids_are_an_error(tmp_path):
    path = _write(tmp_path, _row(3), _row(3, x=5.0))
    with pytest.raises(PsfcatFormatError, match=r"id\(s\) \[3\] occur more than once"):
        read_psfcat(path, jid="j", image_shape=(64, 64))


# ZTF candids: 19 digits, beyond float64's 15-16 significant ones.
CANDIDS = (1234567890123456790, 1234567890123456791, 1234567890123457790)


def test_19_digit_ids_are_kept_exact_through_the_index_files(tmp_path):
    path = _write(
        tmp_path,
        _row(CANDIDS[0], match=CANDIDS[2], label=1),
        _row(CANDIDS[1], match=-1),
        _row(CANDIDS[2], match=""),
    )
    frame = read_psfcat(path, jid="j", image_shape=(64, 64))
    # As float64 the first two are one number (1.2345678901234568e+18): "occur more than once".
    assert frame["id"].tolist() == list(CANDIDS)
    assert frame["match"].tolist()[:2] == [CANDIDS[2], -1] and frame["match"].isna().tolist()[2]
    index = build_master_index([frame], {"j": "train"})
    csv_path, parquet_path = write_master_index(
        index, tmp_path / "master_index.csv", tmp_path / "master_index.parquet"
    )
    assert [line.split(",")[0] for line in csv_path.read_text().splitlines()[1:]] == [
        str(candid) for candid in CANDIDS
    ]
    pd.testing.assert_frame_equal(read_index_csv(csv_path), index)
    assert pd.read_parquet(parquet_path)["id"].tolist() == list(CANDIDS)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (
            "9223372036854775808",
            r"column 'id', row 1 \(file line 3\): 9223372036854775808 is outside the 64-bit "
            r"integer range \[-9223372036854775808, 9223372036854775807\]; ids must fit in int64",
        ),
        ("12.5", r"column 'id', row 1 \(file line 3\): '12.5' is not a whole number"),
        ("x7", r"column 'id', row 1 \(file line 3\): 'x7' is not a number"),
    ],
)
def test_ids_that_are_not_int64_integers_are_refused(tmp_path, cell, message):
    path = _write(tmp_path, _row(1), _row(cell))
    with pytest.raises(PsfcatFormatError, match=message):
        read_psfcat(path, jid="j", image_shape=(64, 64))


def test_integral_float_ids_of_earlier_index_files_are_read_as_integers(tmp_path):
    # Index files written before ids were integers hold "1.0"; they stay readable.
    frame = read_psfcat(_write(tmp_path, _row(1), _row(2)), jid="j", image_shape=(64, 64))
    index = build_master_index([frame], {"j": "test"})
    legacy = index.astype({"id": np.float64, "match": np.float64})
    legacy.to_csv(tmp_path / "old.csv", index=False)
    assert "1.0,j," in (tmp_path / "old.csv").read_text()
    pd.testing.assert_frame_equal(read_index_csv(tmp_path / "old.csv"), index)


def test_numeric_and_na_like_job_ids_stay_text_in_the_index(tmp_path):
    jids = ["000678", "12345", "NA"]
    frames = [
        read_psfcat(_write(tmp_path, _row(1), name=f"{n}.csv"), jid=jid, image_shape=(64, 64))
        for n, jid in enumerate(jids)
    ]
    index = build_master_index(frames, dict.fromkeys(jids, "train"))
    write_master_index(index, tmp_path / "master_index.csv")
    back = read_index_csv(tmp_path / "master_index.csv", usecols=["jid", "split"])
    assert back["jid"].tolist() == ["000678", "12345", "NA"]
    assert dict(zip(back["jid"], back["split"], strict=True)) == dict.fromkeys(jids, "train")


def test_a_header_only_index_is_read_with_its_documented_dtypes(tmp_path):
    write_master_index(build_master_index([], {}), tmp_path / "master_index.csv")
    index = read_index_csv(tmp_path / "master_index.csv")
    assert len(index) == 0 and tuple(index.columns) == MASTER_INDEX_COLUMNS
    assert index["x"].dtype == np.float64 and index["flux"].dtype == np.float64
    assert index["id"].dtype == np.int64 and index["match"].dtype == pd.Int64Dtype()
    assert index["label"].dtype == np.int64 and index["in_image"].dtype == bool
    # The empty table built in memory has the same types as the one read back.
    assert build_master_index([], {}).dtypes.to_dict() == index.dtypes.to_dict()


def test_a_delimiter_at_the_end_of_each_data_line_is_tolerated(tmp_path):
    path = _write(tmp_path, _row(7) + ",", _row(8, x=5.0) + ",")
    frame = read_psfcat(path, jid="j", image_shape=(64, 64))
    assert frame["id"].tolist() == [7, 8]
    assert frame["x"].tolist() == [10.0, 5.0]
    assert frame["label"].tolist() == [0, 0]
    shifted = _write(tmp_path, _row(7) + ",", _row(8) + ",lost", name="shifted.csv")
    with pytest.raises(
        PsfcatFormatError,
        match=r"file line 3 has 15 fields but the header names 14 \(extra: \['lost'\]\)",
    ):
        read_psfcat(shifted, jid="j", image_shape=(64, 64))


def test_a_catalog_that_is_not_utf8_names_the_file_line_and_encoding(tmp_path):
    path = tmp_path / "psfcat.csv"
    lines = [HEADER + ",note", _row(1) + ",ok", _row(2) + ",d\xe9tection"]
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    with pytest.raises(PsfcatFormatError) as raised:
        read_psfcat(path, jid="j", image_shape=(64, 64))
    assert str(raised.value) == (
        f"{path}: byte 0xe9 on file line 3 is not UTF-8; the catalog must be UTF-8 text "
        "(plain ASCII is UTF-8): convert it, e.g. with `iconv -f latin1 -t utf-8`"
    )


@pytest.mark.parametrize(
    ("encoding", "said", "iconv_name"),
    [
        ("utf-16", "UTF-16", "UTF-16"),  # with a byte-order mark, as Excel and PowerShell write
        ("utf-16-le", "UTF-16 little-endian without a byte-order mark", "UTF-16LE"),
        ("utf-16-be", "UTF-16 big-endian without a byte-order mark", "UTF-16BE"),
        ("utf-32", "UTF-32", "UTF-32"),
    ],
)
def test_a_utf16_catalog_is_a_format_error_not_an_incomplete_file(
    tmp_path, encoding, said, iconv_name
):
    path = tmp_path / "psfcat.csv"
    # A final line break, and one without: either way its lines must not look cut by a copy.
    for text in ("\n".join([HEADER, _row(1), _row(2)]) + "\n", "\n".join([HEADER, _row(1)])):
        path.write_bytes(text.encode(encoding))
        with pytest.raises(PsfcatFormatError) as raised:
            read_psfcat(path, jid="j", image_shape=(64, 64))
        assert not isinstance(raised.value, IncompletePsfcatError)
        assert str(raised.value) == (
            f"{path} is not UTF-8 (it is {said}); the catalog must be UTF-8 text (plain ASCII "
            f"is UTF-8): convert it, e.g. with `iconv -f {iconv_name} -t UTF-8 psfcat.csv > "
            "psfcat-utf8.csv`, then put the converted file in its place"
        )


def test_a_catalog_cut_to_nul_bytes_still_looks_incomplete(tmp_path):
    # A download that preallocates its file leaves NUL bytes where the data is still to come.
    path = tmp_path / "psfcat.csv"
    path.write_bytes(("\n".join([HEADER, _row(1)]) + "\n").encode() + b"\x00" * 200)
    with pytest.raises(IncompletePsfcatError):
        read_psfcat(path, jid="j", image_shape=(64, 64))


def test_header_only_gives_an_empty_table(tmp_path):
    frame = read_psfcat(_write(tmp_path), jid="j", image_shape=(8, 8))
    assert len(frame) == 0 and list(frame.columns) == [*SEED_INDEX_COLUMNS, "in_image"]


def test_empty_file(tmp_path):
    path = tmp_path / "psfcat.csv"
    path.write_text("")
    # What cp leaves at first: an incomplete file, still a format error for its handlers.
    with pytest.raises(
        IncompletePsfcatError, match="is empty; the file looks incomplete"
    ) as raised:
        read_psfcat(path, jid="j", image_shape=(8, 8))
    assert isinstance(raised.value, PsfcatFormatError)


def test_a_cut_last_line_is_incomplete(tmp_path):
    path = tmp_path / "psfcat.csv"
    whole = "\n".join([HEADER, _row(1), _row(2, match=123456)])
    path.write_text(whole[: whole.rindex(",")])
    with pytest.raises(IncompletePsfcatError) as raised:
        read_psfcat(path, jid="j", image_shape=(64, 64))
    assert str(raised.value) == (
        f"{path}: the last line ends without a line break after 13 of the header's 14 fields; "
        "the file looks incomplete (still being copied?): wait until the copy has finished, or "
        "copy it again"
    )


def test_a_file_cut_inside_a_utf8_character_is_incomplete(tmp_path):
    path = tmp_path / "psfcat.csv"
    text = "\n".join([HEADER + ",note", _row(1) + ",ok", _row(2) + ",d\u00e9tection"])
    data = text.encode()
    path.write_bytes(data[: data.index("\u00e9".encode()) + 1])
    with pytest.raises(IncompletePsfcatError, match="ends inside a UTF-8 character"):
        read_psfcat(path, jid="j", image_shape=(64, 64))


def test_a_whole_last_line_without_a_line_break_is_read(tmp_path):
    path = tmp_path / "psfcat.csv"
    path.write_text("\n".join([HEADER, _row(1), _row(2)]))
    assert list(read_psfcat(path, jid="j", image_shape=(64, 64))["id"]) == [1, 2]


def test_unsafe_job_id_and_bad_shape(tmp_path):
    path = _write(tmp_path, _row(1))
    with pytest.raises(UnsafePathError, match="not a safe path component"):
        read_psfcat(path, jid="../etc", image_shape=(8, 8))
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\)"):
        read_psfcat(path, jid="j", image_shape=(8,))


def _frames(tmp_path):
    a = read_psfcat(
        _write(tmp_path, _row(1), _row(2, label=1, match=4), name="a.csv"),
        jid="jid002",
        image_shape=(64, 64),
    )
    b = read_psfcat(_write(tmp_path, _row(5), name="b.csv"), jid="jid001", image_shape=(64, 64))
    return a, b


def test_master_index_columns_order_and_splits(tmp_path):
    a, b = _frames(tmp_path)
    before = (a.copy(), b.copy())
    index = build_master_index([a, b], {"jid001": "test", "jid002": "train", "other": "test"})

    assert tuple(index.columns) == MASTER_INDEX_COLUMNS
    assert MASTER_INDEX_COLUMNS[: len(SEED_INDEX_COLUMNS)] == SEED_INDEX_COLUMNS
    assert index["jid"].tolist() == ["jid001", "jid002", "jid002"]
    assert index["id"].tolist() == [5.0, 1.0, 2.0]
    assert index["split"].tolist() == ["test", "train", "train"]
    assert index["label"].dtype == np.int64 and index["in_image"].dtype == bool
    pd.testing.assert_frame_equal(a, before[0])
    pd.testing.assert_frame_equal(b, before[1])


def test_master_index_errors(tmp_path):
    a, b = _frames(tmp_path)
    with pytest.raises(ValueError, match=r"job\(s\) \['jid001'\] have no split"):
        build_master_index([a, b], {"jid002": "train"})
    with pytest.raises(ValueError, match="'jid002' appears in frames 0 and 1"):
        build_master_index([a, a], {"jid002": "train"})
    with pytest.raises(ValueError, match="mixes jobs"):
        build_master_index([pd.concat([a, b])], {"jid001": "test", "jid002": "train"})
    with pytest.raises(ValueError, match="lacks column"):
        build_master_index([a.drop(columns=["flux"])], {"jid002": "train"})


def test_empty_master_index():
    index = build_master_index([], {})
    assert tuple(index.columns) == MASTER_INDEX_COLUMNS and len(index) == 0


def test_write_master_index_round_trip(tmp_path):
    a, b = _frames(tmp_path)
    index = build_master_index([a, b], {"jid001": "test", "jid002": "train"})
    csv_path, parquet_path = write_master_index(
        index, tmp_path / "ds" / "master_index.csv", tmp_path / "ds" / "master_index.parquet"
    )
    from_csv = pd.read_csv(csv_path)
    assert tuple(from_csv.columns) == MASTER_INDEX_COLUMNS
    np.testing.assert_array_equal(from_csv["x"], index["x"])
    np.testing.assert_array_equal(from_csv["label"], index["label"])
    assert from_csv["in_image"].tolist() == index["in_image"].tolist()
    from_parquet = pd.read_parquet(parquet_path)
    assert from_parquet["split"].tolist() == index["split"].tolist()
    with pytest.raises(ValueError, match="lacks column"):
        write_master_index(index.drop(columns=["split"]), tmp_path / "x.csv")


def test_an_index_value_of_the_wrong_type_is_refused_naming_the_file(tmp_path):
    frames = [read_psfcat(_write(tmp_path, _row(1)), jid="jid1", image_shape=(64, 64))]
    path = tmp_path / "master_index.csv"
    write_master_index(build_master_index(frames, {"jid1": "train"}), path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, "label"] = ""
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="does not have its column's documented type") as error:
        read_index_csv(path)
    assert str(error.value).startswith(f"{path}: ")
    assert "materialize master_index again" in str(error.value)


def test_labels_disagreeing_with_the_matching_rule_are_counted_per_job(tmp_path):
    agree = read_psfcat(
        _write(tmp_path, _row(1, label=1, match=7), _row(2, label=0, match=-1), name="a.csv"),
        jid="a",
        image_shape=(64, 64),
    )
    # Vetted by eye: a matched candidate called bogus, an unmatched one called real; a
    # candidate without a match is not judged.
    vetted = read_psfcat(
        _write(
            tmp_path,
            _row(1, label=0, match=7),
            _row(2, label=1, match=-1),
            _row(3, label=1, match=""),
            _row(4, label=1, match=0),
            name="b.csv",
        ),
        jid="b",
        image_shape=(64, 64),
    )
    index = build_master_index([vetted, agree], {"a": "train", "b": "test"})
    before = index.copy()
    assert label_match_disagreements(index) == {"b": 2}
    assert label_match_disagreements(agree) == {}
    pd.testing.assert_frame_equal(index, before)


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (
            "# psfcat from photutils\n" + HEADER + "\n" + _row(1) + "\n",
            "its first line, '# psfcat from photutils', looks like a comment: the header must "
            "be the first line; remove the comment line(s) above it",
        ),
        (
            (HEADER + "\n" + _row(1) + "\n").replace(",", ";"),
            "its header is separated by semicolons, not commas: export the catalog with "
            "commas as the delimiter",
        ),
        (
            (HEADER + "\n" + _row(1) + "\n").replace(",", "\t"),
            "its header is separated by tabs, not commas: export the catalog with commas as "
            "the delimiter",
        ),
    ],
    ids=["comment", "semicolons", "tabs"],
)
def test_a_header_that_names_no_column_says_the_likely_cause(tmp_path, text, cause):
    path = tmp_path / "psfcat.csv"
    path.write_text(text)
    with pytest.raises(PsfcatFormatError) as raised:
        read_psfcat(path, jid="j", image_shape=(64, 64))
    assert cause in str(raised.value)


def test_another_spelling_of_a_missing_value_is_refused_naming_the_accepted_ones(tmp_path):
    path = _write(tmp_path, _row(1), _row(2, mag="N/A"))
    with pytest.raises(PsfcatFormatError) as raised:
        read_psfcat(path, jid="j", image_shape=(64, 64))
    assert str(raised.value) == (
        f"{path}: column 'mag', row 1 (file line 3): 'N/A' is not a number (1 such value(s) "
        "in this column); a missing value is written as an empty cell or nan, not 'N/A'; fix "
        "the catalog"
    )
