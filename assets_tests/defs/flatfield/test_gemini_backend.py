"""The flat-field graph with the Gemini backend, against a loopback server speaking its protocol."""

import dagster as dg
import numpy as np
import pytest

from assets_tests.resources import fake_gemini as fake_server
from assets_tests.resources.fake_gemini import answer_blocked, answer_from_request
from astro_assets.defs.flatfield import defs as flatfield_defs
from astro_assets.io.gemini_codec import encode_for_model
from astro_assets.resources.dust_eye import DustEye
from astro_assets.resources.gemini import GeminiImageModel
from astro_assets.samples import DustSpec, SolarVideoParams, SolarVideoTruth, write_sample_video
from astro_assets.science.flatfield.inpaint import inpaint

fake_gemini = fake_server.fake_gemini

KEY = "AIzaFAKE-dagster-level-key-91b2c3d4"
ASSETS = list(flatfield_defs.assets) + list(flatfield_defs.asset_checks)
VIDEO = SolarVideoParams(
    width=160,
    height=120,
    n_frames=8,
    drift_px=12.0,
    n_sunspots=0,
    dust=(
        DustSpec(x=50.0, y=45.0, diameter_px=14.0, depth=0.3, kind="disc"),
        DustSpec(x=110.0, y=75.0, diameter_px=12.0, depth=0.25, kind="disc"),
    ),
    seed=7,
)


def _padded(array: np.ndarray) -> np.ndarray:
    ramp = np.arange(array.size, dtype=np.float32).reshape(array.shape)
    top, bottom, left, right = encode_for_model(ramp).padding
    return np.pad(array.astype(np.float64), ((top, bottom), (left, right)), mode="edge")


@pytest.fixture
def truth(layout) -> SolarVideoTruth:
    layout.incoming_ser.mkdir(parents=True)
    _, truth_path = write_sample_video(layout.incoming_ser / "sun.ser", VIDEO)
    return SolarVideoTruth.load(truth_path)


def _mask_answer(truth: SolarVideoTruth):
    return answer_from_request(lambda _request: _padded(truth.dust_support(0.02)))


def _inpaint_answer(truth: SolarVideoTruth):
    support = _padded(truth.dust_support(0.002)) > 0

    def draw(request_image: np.ndarray) -> np.ndarray:
        return np.clip(inpaint(request_image, support), 0.0, 1.0)

    return answer_from_request(draw)


def _run(instance, data_store, url, *, backend="gemini", key=KEY, run_config=None, selection=None):
    if "sun" not in instance.get_dynamic_partitions("ser_files"):
        instance.add_dynamic_partitions("ser_files", ["sun"])
    eye = DustEye(
        backend=backend,
        gemini=GeminiImageModel(api_key=key, base_url=url, timeout_s=10.0, max_attempts=2),
    )
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key="sun",
        instance=instance,
        resources={"data_store": data_store, "dust_eye": eye},
        run_config=run_config,
        raise_on_error=False,
    )


def _metadata(result, asset: str) -> dict:
    (event,) = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def test_gemini_backend_runs_the_graph_caches_answers_and_never_leaks_the_key(
    instance, data_store, layout, truth, fake_gemini, monkeypatch
):
    monkeypatch.chdir(layout.root)
    server, url = fake_gemini
    server.enqueue(_mask_answer(truth), _inpaint_answer(truth))
    result = _run(instance, data_store, url)
    assert result.success
    mask_meta = _metadata(result, "dust_mask")
    assert server.request_count == 2, mask_meta
    assert mask_meta["backend"] == "gemini"
    assert mask_meta["backend_reason"] == "requested explicitly"
    assert mask_meta["region_count"] == 2
    assert _metadata(result, "inpainted")["backend"] == "gemini"

    downstream = dg.AssetSelection.assets("dust_mask").downstream()
    again = _run(instance, data_store, url, selection=downstream)
    assert again.success
    assert server.request_count == 2, "re-materializing must be answered from the cache"

    server.enqueue(_mask_answer(truth))
    reroll = {"ops": {"dust_mask": {"config": {"attempt": 1}}}}
    rerolled = _run(
        instance,
        data_store,
        url,
        run_config=reroll,
        selection=dg.AssetSelection.assets("dust_mask"),
    )
    assert rerolled.success
    assert server.request_count == 3
    details = _metadata(rerolled, "dust_mask")["model_details"]
    assert len(details["attempts_on_disk"]) == 2

    runs = instance.get_runs()
    assert len(runs) == 3
    for run in runs:
        assert KEY not in dg.serialize_value(run)
        for entry in instance.all_logs(run.run_id):
            assert KEY not in dg.serialize_value(entry)
    for path in layout.root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_auto_without_a_key_uses_the_classical_backend(
    instance, data_store, layout, truth, fake_gemini, monkeypatch
):
    monkeypatch.chdir(layout.root)
    server, url = fake_gemini
    result = _run(instance, data_store, url, backend="auto", key=None)
    assert result.success
    meta = _metadata(result, "dust_mask")
    assert meta["backend"] == "classical"
    assert meta["backend_reason"] == "auto: no Gemini API key configured"
    assert server.request_count == 0


def test_explicit_gemini_without_a_key_fails_clearly(
    instance, data_store, layout, truth, fake_gemini, monkeypatch
):
    monkeypatch.chdir(layout.root)
    _, url = fake_gemini
    result = _run(
        instance,
        data_store,
        url,
        key=None,
        selection=dg.AssetSelection.assets("ser_median", "dust_mask"),
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no API key is configured" in str(failure.step_failure_data.error)


def test_a_safety_block_fails_the_step_without_falling_back(
    instance, data_store, layout, truth, fake_gemini, monkeypatch
):
    monkeypatch.chdir(layout.root)
    server, url = fake_gemini
    server.enqueue(answer_blocked())
    result = _run(
        instance, data_store, url, selection=dg.AssetSelection.assets("ser_median", "dust_mask")
    )
    assert not result.success
    assert server.request_count == 1
    assert result.asset_materializations_for_node("dust_mask") == []
    assert not layout.flatfield_file("sun", "dust_mask.tiff").exists()
