"""Synthetic RAPID-style jobs: contract layout and ground truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from astro_assets.io.fits import JOB_FILES, job_file_paths, read_image
from astro_assets.samples.jobs import (
    PSFCAT_COLUMNS,
    PSFCAT_FLAG_BITS,
    JobParams,
    generate_jobs,
    read_truth,
    write_sample_job,
)
from astro_assets.science.transients.candidates import PSFCAT_COLUMNS as CONTRACT_COLUMNS

SEED = 21
N_JOBS = 6
SIZE = 128


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    folders = generate_jobs(root, N_JOBS, size=SIZE, seed=SEED)
    loaded = []
    for folder in folders:
        loaded.append(
            {
                "folder": folder,
                "catalog": pd.read_csv(folder / "psfcat.csv"),
                "truth": read_truth(root, folder.name),
                **{
                    role: read_image(job_file_paths(folder)[role])[0]
                    for role in JOB_FILES
                    if role != "catalog"
                },
            }
        )
    return root, loaded


def _robust_sigma(values):
    values = values[np.isfinite(values)]
    return 1.4826 * np.median(np.abs(values - np.median(values)))


def _isolated(transient, truth, radius=10.0):
    others = [(c["x0"], c["y0"]) for c in truth["cosmic_rays"]]
    others += [(c["x1"], c["y1"]) for c in truth["cosmic_rays"]]
    others += [(h["x"], h["y"]) for h in truth["hot_pixels"]]
    others += [(t["x"], t["y"]) for t in truth["transients"] if t["id"] != transient["id"]]
    return all(math.hypot(transient["x"] - x, transient["y"] - y) > radius for x, y in others)


def test_folder_holds_exactly_the_contract_files(jobs):
    root, loaded = jobs
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f"jid{i:03d}" for i in range(1, N_JOBS + 1)]
        + [f"jid{i:03d}.truth.json" for i in range(1, N_JOBS + 1)]
    )
    for job in loaded:
        assert sorted(p.name for p in job["folder"].iterdir()) == sorted(JOB_FILES.values())
        for role in ("science", "reference", "difference", "score"):
            assert job[role].shape == (SIZE, SIZE)
        header = fits.getheader(job["folder"] / JOB_FILES["science"])
        assert header["BITPIX"] == -32 and header["BUNIT"] == "ADU"


def test_catalog_columns_and_flags(jobs):
    _, loaded = jobs
    assert PSFCAT_COLUMNS == CONTRACT_COLUMNS
    all_bits = sum(PSFCAT_FLAG_BITS.values())
    for job in loaded:
        catalog = job["catalog"]
        assert tuple(catalog.columns) == PSFCAT_COLUMNS
        assert catalog["id"].is_unique
        assert ((catalog["flags"] & ~all_bits) == 0).all()
        assert (catalog["label"] == (catalog["match"] >= 0)).all()
        positive = catalog["flux"] > 0
        np.testing.assert_allclose(
            catalog.loc[positive, "mag"], -2.5 * np.log10(catalog.loc[positive, "flux"])
        )
        nonpositive = (catalog["flags"] & PSFCAT_FLAG_BITS["nonpositive_flux"]) > 0
        assert (nonpositive == ~positive).all()
        near_edge = (catalog["flags"] & PSFCAT_FLAG_BITS["near_edge"]) > 0
        fwhm = job["truth"]["params"]["psf_fwhm_px"]
        distance = np.minimum.reduce(
            [catalog["x"], catalog["y"], SIZE - 1 - catalog["x"], SIZE - 1 - catalog["y"]]
        )
        assert (near_edge == (distance < 2 * fwhm)).all()


def test_labels_equal_an_independent_truth_matching(jobs):
    _, loaded = jobs
    for job in loaded:
        catalog = job["catalog"]
        radius = job["truth"]["params"]["match_radius_px"]
        expected = np.full(len(catalog), -1)
        for transient in job["truth"]["transients"]:
            distance = np.hypot(catalog["x"] - transient["x"], catalog["y"] - transient["y"])
            if len(distance) and distance.min() <= radius:
                nearest = int(np.argmin(distance))
                if expected[nearest] < 0:
                    expected[nearest] = transient["id"]
        np.testing.assert_array_equal(catalog["match"], expected)
        assert job["truth"]["n_real_candidates"] == int(catalog["label"].sum())


def test_bright_isolated_transients_are_found_with_their_flux(jobs):
    _, loaded = jobs
    bright = found = 0
    ratios = []
    for job in loaded:
        catalog = job["catalog"].set_index("match")
        for transient in job["truth"]["transients"]:
            if transient["id"] in catalog.index:
                ratios.append(catalog.loc[transient["id"], "flux"] / transient["flux"])
            if (
                transient["snr"] >= 40
                and not transient["hosted"]
                and _isolated(transient, job["truth"])
            ):
                bright += 1
                found += transient["id"] in catalog.index
    assert bright >= 1 and found == bright
    # PSF photometry on the difference recovers the injected flux: the transient is in the
    # science image only.
    assert np.median(ratios) == pytest.approx(1.0, abs=0.1)


def test_reference_has_no_transients_and_science_has_them(jobs):
    _, loaded = jobs
    for job in loaded:
        noise = _robust_sigma(job["reference"])
        for transient in job["truth"]["transients"]:
            if transient["hosted"] or transient["snr"] < 40:
                continue
            row, col = round(transient["y"]), round(transient["x"])
            star_near = any(
                math.hypot(s["x"] - transient["x"], s["y"] - transient["y"]) < 10
                for s in job["truth"]["stars"]
            )
            if not star_near:
                assert abs(job["reference"][row, col]) < 6 * noise
            assert job["science"][row, col] - job["reference"][row, col] > 0


def test_cosmic_rays_are_in_the_difference_only_through_the_science(jobs):
    _, loaded = jobs
    checked = 0
    for job in loaded:
        for ray in job["truth"]["cosmic_rays"]:
            row, col = round(ray["y0"]), round(ray["x0"])
            if not np.isfinite(job["difference"][row, col]):
                continue
            assert job["difference"][row, col] > 0.5 * ray["amplitude"]
            assert job["science"][row, col] - job["reference"][row, col] > 0.5 * ray["amplitude"]
            checked += 1
    assert checked >= N_JOBS


def test_score_is_a_significance_map(jobs):
    _, loaded = jobs
    for job in loaded:
        assert _robust_sigma(job["score"]) == pytest.approx(1.0, abs=0.05)
        assert np.array_equal(np.isnan(job["score"]), np.isnan(job["difference"]))


def test_class_balance_is_bogus_dominated_with_enough_reals(jobs):
    _, loaded = jobs
    labels = np.concatenate([job["catalog"]["label"].to_numpy() for job in loaded])
    assert 0.05 < labels.mean() < 0.45


def test_same_seed_same_files(tmp_path):
    params = JobParams(size=48, n_stars=10, n_transients=2, seed=4)
    a = write_sample_job(tmp_path / "a", "x", params)
    b = write_sample_job(tmp_path / "b", "x", params)
    assert (a / "psfcat.csv").read_text() == (b / "psfcat.csv").read_text()
    for name in JOB_FILES.values():
        if name.endswith(".fits"):
            np.testing.assert_array_equal(read_image(a / name)[0], read_image(b / name)[0])


def test_more_jobs_reproduce_the_first_ones(jobs, tmp_path):
    _, loaded = jobs
    fewer = generate_jobs(tmp_path, 2, size=SIZE, seed=SEED)
    for folder, job in zip(fewer, loaded[:2], strict=True):
        assert folder.name == job["folder"].name
        assert (folder / "psfcat.csv").read_text() == (job["folder"] / "psfcat.csv").read_text()


def test_truth_file_describes_the_job(jobs):
    _, loaded = jobs
    truth = loaded[0]["truth"]
    assert truth["jid"] == "jid001" and truth["params"]["size"] == SIZE
    assert "0-based" in truth["coordinates"]
    assert len(truth["transients"]) == truth["params"]["n_transients"]


def test_scaled_counts_follow_the_area():
    params = JobParams.scaled(4090, seed=1)
    base = JobParams()
    factor = 4090**2 / 256**2
    assert params.size == 4090 and params.seed == 1
    assert params.n_stars == round(base.n_stars * factor)
    assert params.n_transients == round(base.n_transients * factor)
    assert JobParams.scaled(16).n_transients == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 8}, "size must be in 16..8192"),
        ({"n_stars": -1}, "counts must be >= 0"),
        ({"reference_fwhm_ratio": 1.2}, "reference_fwhm_ratio"),
        ({"star_flux_min": 10.0, "star_flux_max": 5.0}, "star fluxes"),
        ({"hosted_fraction": 2.0}, "hosted_fraction"),
    ],
)
def test_invalid_params(kwargs, message):
    with pytest.raises(ValueError, match=message):
        JobParams(**kwargs)


def test_invalid_job_id_and_count(tmp_path):
    with pytest.raises(ValueError, match="not a safe path component"):
        write_sample_job(tmp_path, "../escape", JobParams(size=32))
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        generate_jobs(tmp_path, 0)
