"""``astro-assets`` end to end against a persistent (on-disk) instance, as ``make demo`` uses it.

Each command runs as its own process, exactly as a user runs it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

YAML = "telemetry:\n  enabled: false\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dagster.yaml").write_text(YAML)
    return tmp_path


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DAGSTER_HOME", "GEMINI_API_KEY", "ASTRO_ASSETS_DATA"}
    }
    env.update(ASTRO_ASSETS_DATA=str(project / "data"), ASTRO_ASSETS_DUST_BACKEND="classical")
    return subprocess.run(
        [sys.executable, "-m", "astro_assets.cli", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_samples_ingest_materialize_record_runs_in_the_project_instance(project):
    samples = cli(project, "samples", "--size", "small", "--jobs", "2", "--job-size", "64")
    assert samples.returncode == 0, samples.stderr
    data = project / "data"
    incoming = data / "incoming" / "ser"
    videos = sorted(p.stem for p in incoming.glob("*.ser"))
    assert videos
    assert all((incoming / f"{v}.truth.npz").exists() for v in videos)
    jobs = sorted(p.name for p in (data / "incoming" / "jobs").iterdir() if p.is_dir())
    assert jobs == ["jid001", "jid002"]
    darks = sorted(p.stem for p in (data / "incoming" / "darks").glob("*.ser"))
    assert darks and set(darks) < set(videos)

    first = cli(project, "ingest", "--watch-seconds", "0")
    assert first.returncode == 0, first.stderr
    assert "added    jids/jid001" in first.stdout
    again = cli(project, "ingest", "--watch-seconds", "0")
    assert "nothing new" in again.stdout

    home = project / ".dagster_home"
    assert (home / "dagster.yaml").read_text() == YAML
    run = cli(project, "materialize", "--select", "ser_median", "--partition", videos[0])
    assert run.returncode == 0, run.stderr
    assert f"ok     ser_median [ser_files/{videos[0]}]" in run.stdout
    assert (data / "flatfield" / videos[0] / "ser_median.tiff").is_file()
    # A sample dark pairs with the video of its name: no partition of its own, no configuration.
    paired = cli(project, "materialize", "--select", "ser_median", "--partition", darks[0])
    assert paired.returncode == 0, paired.stderr
    source = json.loads((data / "flatfield" / darks[0] / "source.json").read_text())
    assert source["dark"]["file"] == f"{darks[0]}.ser"
    assert (data / "flatfield" / darks[0] / "master_dark.fits").is_file()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        assert instance.get_dynamic_partitions("ser_files") == videos


REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_packaged_instance_settings_are_the_projects_dagster_yaml():
    from astro_assets.cli import INSTANCE_SETTINGS

    assert (REPO_ROOT / "dagster.yaml").read_text(encoding="utf-8") == INSTANCE_SETTINGS


def test_a_command_run_outside_the_checkout_gets_the_projects_instance_settings(tmp_path):
    from astro_assets.cli import INSTANCE_SETTINGS

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data" / "incoming" / "jobs").mkdir(parents=True)
    result = cli(elsewhere, "ingest", "--watch-seconds", "0")
    assert result.returncode == 0, result.stderr
    assert "No dagster instance configuration file" not in result.stderr
    home = elsewhere / ".dagster_home"
    assert (home / "dagster.yaml").read_text() == INSTANCE_SETTINGS
    assert not [p.name for p in home.iterdir() if p.name.startswith(".dagster.yaml.")]
    # A user's own settings stay.
    (home / "dagster.yaml").write_text(YAML)
    assert cli(elsewhere, "ingest", "--watch-seconds", "0").returncode == 0
    assert (home / "dagster.yaml").read_text() == YAML


def test_make_writes_the_instance_settings_only_where_there_are_none(tmp_path):
    # An instance's own settings, older than the project's file, stay: make copies only into a
    # DAGSTER_HOME that has none.
    def planned(home: Path) -> str:
        target = home / "dagster.yaml"
        return subprocess.run(
            ["make", "-n", "-C", str(REPO_ROOT), f"DAGSTER_HOME={home}", str(target)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text(YAML)
    os.utime(own / "dagster.yaml", (0, 0))
    assert "cp dagster.yaml" not in planned(own)
    assert f"cp dagster.yaml {tmp_path / 'new' / 'dagster.yaml'}" in planned(tmp_path / "new")


def test_a_partition_for_a_selection_without_partitioned_assets_is_refused(project):
    result = cli(project, "materialize", "--select", "master_index", "--partition", "night_0")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "astro-assets materialize: error: --partition 'night_0' was given, but the selection "
        "'master_index' holds no partitioned asset (master_index); leave out --partition to run "
        "it, or select partitioned assets (ser_median and the flat-field chain: a video's key; "
        "job_tensors: a job's key)"
    )
    assert not (project / "data" / "dataset").exists()


def test_materialize_refuses_an_unregistered_partition(project):
    result = cli(project, "materialize", "--select", "ser_median", "--partition", "nope")
    assert result.returncode == 2
    assert "run `astro-assets ingest` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_partition_without_a_selection_runs_the_assets_partitioned_by_its_set(project):
    # A video's key is no job's: the default selection (everything) ran job_tensors for it
    # too and was refused with "not registered in 'jids'", although ingest registered it.
    ser = project / "data" / "incoming" / "ser"
    ser.mkdir(parents=True)
    (ser / "broken.ser").write_bytes(b"not a ser file at all" * 20)
    assert cli(project, "ingest", "--watch-seconds", "0").returncode == 0
    result = cli(project, "materialize", "--partition", "broken")
    assert result.returncode == 1, result.stderr
    assert "FAILED ser_median, dust_mask, inpainted" in result.stdout
    assert "[ser_files/broken]" in result.stdout
    assert "jids" not in result.stdout + result.stderr
    # A selection given names what to run: a job's assets for a video's key are refused.
    named = cli(project, "materialize", "--select", "job_tensors", "--partition", "broken")
    assert named.returncode == 2
    assert "partition 'broken' is not registered in 'jids'" in named.stderr
    unknown = cli(project, "materialize", "--partition", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines()[-1] == (
        "astro-assets materialize: error: partition 'nope' is registered in none of "
        "'jids', 'ser_files': run `astro-assets ingest` first if it is a new video or job "
        "folder, or check the key (a video's is its file's stem, a job's its folder's name)"
    )


def test_a_partition_registered_as_a_video_and_a_job_selects_both_and_says_so():
    from astro_assets.cli import selection_holding_partition

    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("ser_files", ["sun", "night_1"])
        instance.add_dynamic_partitions("jids", ["night_1"])
        video, note = selection_holding_partition(instance, "sun")
        assert note is None
        assert video == (
            "key:ser_median or key:dust_mask or key:inpainted or key:matched_inpaint or "
            "key:final_flatfield or key:calibrated_video"
        )
        both, note = selection_holding_partition(instance, "night_1")
        assert both == f"key:job_tensors or {video}"
        assert note == (
            "partition 'night_1' is registered in 'jids' and 'ser_files': running the assets "
            "of both (jids: job_tensors; ser_files: ser_median, dust_mask, inpainted, "
            "matched_inpaint, final_flatfield, calibrated_video); give --select to run only "
            "one of them"
        )


def test_materialize_exits_non_zero_when_a_run_fails(project):
    ser = project / "data" / "incoming" / "ser"
    ser.mkdir(parents=True)
    (ser / "broken.ser").write_bytes(b"not a ser file at all" * 20)
    assert cli(project, "ingest", "--watch-seconds", "0").returncode == 0
    result = cli(project, "materialize", "--select", "ser_median")
    assert result.returncode == 1
    assert "FAILED ser_median [ser_files/broken]" in result.stdout
    # The reason, under the run's line: the file is no SER video.
    failed_step = result.stdout.splitlines()[1].strip()
    assert failed_step.startswith("ser_median: ") and "SER" in failed_step


def test_unknown_selection_is_an_error(project):
    result = cli(project, "materialize", "--select", "nonexistent_asset")
    assert result.returncode == 2
    assert "nonexistent_asset" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_selection_that_names_no_asset_or_cannot_be_parsed_is_an_error(project):
    # A misspelled group resolves to nothing: a scheduled command must fail, not do nothing.
    typo = cli(project, "materialize", "--select", "group:flatfeld")
    assert typo.returncode == 2
    assert (
        "the selection 'group:flatfeld' names no asset; the groups are flatfield, transients"
        in typo.stderr
    )
    listed = cli(project, "materialize", "--select", "master_index,croissant_metadata")
    assert listed.returncode == 2
    assert "'key:master_index or key:croissant_metadata'" in listed.stderr
    assert "Traceback" not in typo.stderr + listed.stderr


def test_ingest_reports_what_it_cannot_use_and_a_removed_video(project):
    incoming = project / "data" / "incoming"
    (incoming / "ser").mkdir(parents=True)
    (incoming / "ser" / "sun.ser").write_bytes(b"\0" * 64)
    # A folder that lists no video keeps its partitions (a disk not mounted): another stays.
    (incoming / "ser" / "moon.ser").write_bytes(b"\0" * 64)
    (incoming / "ser" / "notes.txt").write_text("seeing 2/5")
    (incoming / "jobs" / "-rf").mkdir(parents=True)
    first = cli(project, "ingest", "--watch-seconds", "0")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "added    ser_files/sun" in lines
    assert any(line.startswith("rejected job folder '-rf'") for line in lines)
    assert any(line.startswith("skipped  'notes.txt'") for line in lines)
    (incoming / "ser" / "sun.ser").unlink()
    second = cli(project, "ingest", "--watch-seconds", "0")
    assert second.returncode == 0, second.stderr
    assert "removed  ser_files/sun (its video is gone; its products stay on disk)" in (
        second.stdout.splitlines()
    )


def test_ingest_of_an_unreadable_incoming_folder_exits_non_zero_with_a_message(
    project, monkeypatch, capsys
):
    from astro_assets import cli as cli_module

    jobs = project / "data" / "incoming" / "jobs"
    jobs.mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.setenv("DAGSTER_HOME", str(project / ".dagster_home"))
    monkeypatch.setenv("ASTRO_ASSETS_DATA", str(project / "data"))
    scandir = os.scandir

    def stale(path):
        if Path(path) == jobs:
            raise OSError(116, "Stale file handle", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", stale)
    assert cli_module.main(["ingest", "--watch-seconds", "0"]) == 1
    captured = capsys.readouterr()
    assert f"astro-assets ingest: error: {jobs} could not be listed (Stale file handle)" in (
        captured.err
    )
    assert "Traceback" not in captured.err
    # Said once, on standard error only.
    assert captured.err.count("could not be listed") == 1
    assert "could not be listed" not in captured.out
