"""The on-disk cache of image-model answers."""

from __future__ import annotations

import json

import pytest

from astro_assets.io.answer_cache import AnswerCache, CacheCorruptError, sha256_hex

INPUT = sha256_hex(b"request image bytes")
OTHER_INPUT = sha256_hex(b"another request image")
PROMPT = "Mark the dust shadows in white on black."
MODEL = "gemini-3-pro-image-preview"
ANSWER = b"\x89PNG\r\n\x1a\nanswer-0"


def test_put_then_get_returns_the_same_bytes(tmp_path):
    cache = AnswerCache(tmp_path)
    stored = cache.put(INPUT, PROMPT, MODEL, "2K", 0, ANSWER, "image/png", text="done")
    found = cache.get(INPUT, PROMPT, MODEL, "2K", 0)
    assert found == stored
    assert found.read() == ANSWER
    assert found.path.suffix == ".png" and found.path.parent.parent == tmp_path
    assert found.text == "done" and found.sha256 == sha256_hex(ANSWER)
    record = json.loads(found.record_path.read_text())
    assert record["input_sha256"] == INPUT and record["prompt"] == PROMPT
    assert record["model"] == MODEL and record["attempt"] == 0


@pytest.mark.parametrize(
    "request_key",
    [
        (OTHER_INPUT, PROMPT, MODEL, "2K", 0),
        (INPUT, "another prompt", MODEL, "2K", 0),
        (INPUT, PROMPT, "another-model", "2K", 0),
        (INPUT, PROMPT, MODEL, "4K", 0),
        (INPUT, PROMPT, MODEL, "2K", 1),
    ],
)
def test_any_change_of_the_request_is_a_miss(tmp_path, request_key):
    cache = AnswerCache(tmp_path)
    cache.put(INPUT, PROMPT, MODEL, "2K", 0, ANSWER, "image/png")
    assert cache.get(*request_key) is None


def test_list_attempts_lists_every_reroll_of_one_request(tmp_path):
    cache = AnswerCache(tmp_path)
    cache.put(INPUT, PROMPT, MODEL, "2K", 2, b"third", "image/jpeg")
    cache.put(INPUT, PROMPT, MODEL, "2K", 0, b"first", "image/png")
    cache.put(INPUT, PROMPT, MODEL, "2K", 1, b"second", "image/webp")
    cache.put(OTHER_INPUT, PROMPT, MODEL, "2K", 5, b"elsewhere", "image/png")
    attempts = cache.list_attempts(INPUT, PROMPT, MODEL)
    assert [a.attempt for a in attempts] == [0, 1, 2]
    assert [a.read() for a in attempts] == [b"first", b"second", b"third"]
    assert [a.path.suffix for a in attempts] == [".png", ".webp", ".jpg"]
    assert all(a.path.is_file() for a in attempts)
    assert attempts[0].describe()["path"] == str(attempts[0].path)
    assert cache.list_attempts(sha256_hex(b"never asked"), PROMPT, MODEL) == []


def test_put_overwrites_the_same_request_and_leaves_no_temporary_files(tmp_path):
    cache = AnswerCache(tmp_path)
    cache.put(INPUT, PROMPT, MODEL, "2K", 0, b"old", "image/png")
    cache.put(INPUT, PROMPT, MODEL, "2K", 0, b"new", "image/png")
    assert cache.get(INPUT, PROMPT, MODEL, "2K", 0).read() == b"new"
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 2 and not any("partial" in name for name in files)


def test_file_names_carry_no_request_text(tmp_path):
    cache = AnswerCache(tmp_path)
    answer = cache.put(INPUT, PROMPT, MODEL, "2K", 3, ANSWER, "image/png")
    assert answer.path.name.startswith("attempt-003-2K-")
    for path in tmp_path.rglob("*"):
        assert "dust" not in path.name and MODEL not in path.name


def test_an_answer_without_its_record_is_ignored(tmp_path):
    cache = AnswerCache(tmp_path)
    answer = cache.put(INPUT, PROMPT, MODEL, "2K", 0, ANSWER, "image/png")
    answer.record_path.unlink()
    assert cache.get(INPUT, PROMPT, MODEL, "2K", 0) is None
    assert cache.list_attempts(INPUT, PROMPT, MODEL) == []


def test_a_record_without_its_answer_is_ignored(tmp_path):
    cache = AnswerCache(tmp_path)
    answer = cache.put(INPUT, PROMPT, MODEL, "2K", 0, ANSWER, "image/png")
    answer.path.unlink()
    assert cache.get(INPUT, PROMPT, MODEL, "2K", 0) is None


def test_corrupted_answer_is_detected(tmp_path):
    cache = AnswerCache(tmp_path)
    answer = cache.put(INPUT, PROMPT, MODEL, "2K", 0, ANSWER, "image/png")
    answer.path.write_bytes(b"tampered")
    with pytest.raises(CacheCorruptError, match="does not match its recorded sha256; delete"):
        cache.get(INPUT, PROMPT, MODEL, "2K", 0).read()


def test_record_pointing_outside_its_folder_is_refused(tmp_path):
    cache = AnswerCache(tmp_path)
    answer = cache.put(INPUT, PROMPT, MODEL, "2K", 0, ANSWER, "image/png")
    record = json.loads(answer.record_path.read_text())
    record["file"] = "../../etc/passwd"
    answer.record_path.write_text(json.dumps(record))
    with pytest.raises(CacheCorruptError, match="outside its folder"):
        cache.get(INPUT, PROMPT, MODEL, "2K", 0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("not-a-digest", PROMPT, MODEL, "2K", 0), "sha256"),
        ((INPUT, PROMPT, MODEL, "../2K", 0), "image_size"),
        ((INPUT, PROMPT, MODEL, "2K", -1), "attempt"),
    ],
)
def test_bad_request_keys_are_refused(tmp_path, arguments, message):
    cache = AnswerCache(tmp_path)
    with pytest.raises(ValueError, match=message):
        cache.get(*arguments)
    with pytest.raises(ValueError, match=message):
        cache.put(*arguments, ANSWER, "image/png")


def test_empty_answers_are_not_cached(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        AnswerCache(tmp_path).put(INPUT, PROMPT, MODEL, "2K", 0, b"", "image/png")


def test_unknown_mime_type_is_stored_as_bin(tmp_path):
    answer = AnswerCache(tmp_path).put(INPUT, PROMPT, MODEL, "2K", 0, ANSWER, "image/x-new")
    assert answer.path.suffix == ".bin" and answer.mime_type == "image/x-new"
