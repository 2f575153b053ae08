"""``astro-assets`` end to end against a persistent (on-disk) instance, as ``make demo`` uses it."""

from pathlib import Path

import dagster as dg
import pytest

from astro_assets.cli import main


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("ASTRO_ASSETS_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("ASTRO_ASSETS_DUST_BACKEND", "classical")
    return tmp_path


def test_samples_ingest_materialize_record_runs_in_the_project_instance(project, capsys):
    assert main(["samples", "--size", "small", "--jobs", "2", "--job-size", "64"]) == 0
    data = project / "data"
    videos = sorted(p.name for p in (data / "incoming" / "ser").glob("*.ser"))
    assert videos and all(
        (data / "incoming" / "ser" / v).with_suffix(".truth.npz").exists() for v in videos
    )
    assert sorted(p.name for p in (data / "incoming" / "jobs").iterdir() if p.is_dir()) == [
        "jid001",
        "jid002",
    ]

    assert main(["ingest", "--watch-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "added    jids/jid001" in out
    assert main(["ingest", "--watch-seconds", "0"]) == 0
    assert "nothing new" in capsys.readouterr().out

    home = project / ".dagster_home"
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    key = Path(videos[0]).stem
    assert main(["materialize", "--select", "ser_median", "--partition", key]) == 0
    assert (data / "flatfield" / key / "ser_median.tiff").is_file()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_dynamic_partitions("ser_files") == sorted(Path(v).stem for v in videos)


def test_materialize_refuses_an_unregistered_partition(project, capsys):
    assert main(["materialize", "--select", "ser_median", "--partition", "nope"]) == 2
    assert "run `astro-assets ingest` first" in capsys.readouterr().err


def test_materialize_exits_non_zero_when_a_run_fails(project, capsys):
    ser = project / "data" / "incoming" / "ser"
    ser.mkdir(parents=True)
    (ser / "broken.ser").write_bytes(b"not a ser file at all" * 20)
    assert main(["ingest", "--watch-seconds", "0"]) == 0
    assert main(["materialize", "--select", "ser_median"]) == 1
    assert "FAILED ser_median [ser_files/broken]" in capsys.readouterr().out


def test_unknown_selection_is_an_error(project, capsys):
    assert main(["materialize", "--select", "nonexistent_asset"]) == 2
    assert "nonexistent_asset" in capsys.readouterr().err
