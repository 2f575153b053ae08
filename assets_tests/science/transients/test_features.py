import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from astro_assets.science.transients.features import (
    FEATURE_COLUMNS,
    FeatureScaler,
    FeatureScalingConfig,
    MissingFeatureError,
    feature_matrix,
    signed_log1p,
)


def candidate_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sharpness": rng.normal(0.6, 0.1, n),
            "roundness1": rng.normal(0.0, 0.3, n),
            "roundness2": rng.normal(0.0, 0.3, n),
            "npix": rng.integers(5, 400, n).astype(float),
            "peak": rng.lognormal(3, 2, n),
            "flux": rng.lognormal(5, 2, n) * rng.choice([-1, 1], n),
            "mag": rng.normal(20, 1.5, n),
            "daofind_mag": rng.normal(-2, 1, n),
            "flags": np.where(rng.random(n) < 0.1, 4.0, 0.0),
        }
    )


def test_feature_columns_follow_the_catalogue_schema():
    assert FEATURE_COLUMNS == (
        "sharpness",
        "roundness1",
        "roundness2",
        "npix",
        "peak",
        "flux",
        "mag",
        "daofind_mag",
        "flags",
    )


def test_signed_log1p_values():
    np.testing.assert_allclose(signed_log1p(np.array([0.0, math.e - 1, 1 - math.e])), [0, 1, -1])


def test_fit_uses_median_and_iqr_of_transformed_values():
    frame = candidate_frame()
    scaler = FeatureScaler.fit(frame)
    assert scaler.log_columns == ("npix", "peak", "flux")
    for index, name in enumerate(FEATURE_COLUMNS):
        values = frame[name].to_numpy()
        if name in scaler.log_columns:
            values = np.sign(values) * np.log1p(np.abs(values))
        q25, median, q75 = np.percentile(values, [25, 50, 75])
        assert scaler.center[index] == pytest.approx(median)
        expected_scale = (q75 - q25) / 1.349 if q75 > q25 else np.std(values)
        assert scaler.scale[index] == pytest.approx(expected_scale)
    assert scaler.n_fit == 40


def test_zero_iqr_falls_back_to_std_then_one():
    frame = candidate_frame()
    frame["flags"] = 0.0
    frame.loc[:1, "flags"] = 4.0  # 2 of 40 flagged: IQR 0, std > 0
    frame["sharpness"] = 0.5  # constant: std 0 too
    scaler = FeatureScaler.fit(frame)
    flags, sharpness = FEATURE_COLUMNS.index("flags"), FEATURE_COLUMNS.index("sharpness")
    assert scaler.scale[flags] == pytest.approx(np.std(frame["flags"]))
    assert scaler.scale[sharpness] == 1.0
    assert np.isfinite(scaler.transform(frame)).all()


def test_transform_values_are_scaled_and_clipped():
    frame = candidate_frame()
    scaler = FeatureScaler.fit(frame, FeatureScalingConfig(clip=2.0, nan_policy="error"))
    extreme = frame.copy()
    extreme.loc[0, "mag"] = 1e6
    extreme.loc[1, "flux"] = -1e30
    scaled = scaler.transform(extreme)
    assert scaled.dtype == np.float32
    assert scaled.shape == (40, 9)
    assert scaler.n_outputs == 9
    assert scaled[0, FEATURE_COLUMNS.index("mag")] == 2.0
    assert scaled[1, FEATURE_COLUMNS.index("flux")] == -2.0
    assert np.abs(scaled).max() <= 2.0
    row = 5
    index = FEATURE_COLUMNS.index("sharpness")
    expected = (frame.loc[row, "sharpness"] - scaler.center[index]) / scaler.scale[index]
    assert scaled[row, index] == pytest.approx(np.clip(expected, -2, 2), rel=1e-6)


def test_fit_and_transform_do_not_modify_input():
    frame = candidate_frame()
    original = frame.copy()
    FeatureScaler.fit(frame).transform(frame)
    pd.testing.assert_frame_equal(frame, original)


def test_missing_values_raise_under_error_policy():
    frame = candidate_frame()
    frame.loc[3, "mag"] = np.nan
    frame.loc[4, "flux"] = np.inf
    with pytest.raises(MissingFeatureError, match=r"mag: 1.*nan_policy='impute_median'"):
        FeatureScaler.fit(frame, FeatureScalingConfig(nan_policy="error"))
    scaler = FeatureScaler.fit(candidate_frame(), FeatureScalingConfig(nan_policy="error"))
    with pytest.raises(MissingFeatureError, match="flux: 1, mag: 1"):
        scaler.transform(frame)


def test_impute_median_policy_is_recorded_and_gives_zero():
    frame = candidate_frame()
    frame.loc[3, "mag"] = np.nan
    frame.loc[[4, 5], "flux"] = -np.inf
    scaler = FeatureScaler.fit(frame)
    assert scaler.config.nan_policy == "impute_median"
    assert scaler.imputed_at_fit["mag"] == 1
    assert scaler.imputed_at_fit["flux"] == 2
    mag, flux = FEATURE_COLUMNS.index("mag"), FEATURE_COLUMNS.index("flux")
    assert scaler.center[mag] == pytest.approx(np.median(frame["mag"].dropna()))
    scaled = scaler.transform(frame)
    assert scaler.n_outputs == 18
    assert scaled.shape == (40, 18)
    assert scaled[3, mag] == 0.0
    assert scaled[4, flux] == 0.0
    assert np.isfinite(scaled).all()
    indicators = scaled[:, 9:]
    expected = np.zeros((40, 9), dtype=np.float32)
    expected[3, mag] = expected[4, flux] = expected[5, flux] = 1.0
    np.testing.assert_array_equal(indicators, expected)
    clean = frame.drop(index=[3, 4, 5])
    np.testing.assert_array_equal(scaler.transform(clean)[:, 9:], 0.0)


def test_a_column_without_finite_values_cannot_be_fitted():
    frame = candidate_frame()
    frame["peak"] = np.nan
    with pytest.raises(MissingFeatureError, match="'peak' has no finite value"):
        FeatureScaler.fit(frame, FeatureScalingConfig(nan_policy="impute_median"))


def test_json_round_trip():
    scaler = FeatureScaler.fit(candidate_frame(), FeatureScalingConfig(clip=3.0))
    text = scaler.to_json()
    assert json.loads(text)["format_version"] == 1
    assert FeatureScaler.from_json(text) == scaler


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format_version=2), "format version 2"),
        (lambda d: d.pop("center"), "lacks the field"),
        (lambda d: d.update(scale=d["scale"][:-1]), "inconsistent"),
        (lambda d: d.update(scale=[0.0] * 9), "non-positive"),
    ],
)
def test_from_dict_rejects_bad_descriptions(mutate, match):
    data = FeatureScaler.fit(candidate_frame()).to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=match):
        FeatureScaler.from_dict(data)


SCRIPT_DEPRECATION = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(SCRIPT_DEPRECATION)
@pytest.mark.parametrize("nan_policy", ["error", "impute_median"])
def test_torch_module_matches_numpy_and_scripts(nan_policy):
    train = candidate_frame(seed=1)
    scaler = FeatureScaler.fit(train, FeatureScalingConfig(clip=3.0, nan_policy=nan_policy))
    other = candidate_frame(seed=2)
    other.loc[0, "flux"] = 1e12
    if nan_policy == "impute_median":
        other.loc[1, "mag"] = np.nan
    raw = feature_matrix(other).astype(np.float32)
    expected = scaler.transform_array(raw)
    module = scaler.as_module()
    scripted = torch.jit.script(module)
    for candidate in (module, scripted):
        got = candidate(torch.from_numpy(raw)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert set(dict(module.named_buffers())) == {"log_mask", "center", "scale"}


@pytest.mark.filterwarnings(SCRIPT_DEPRECATION)
def test_torch_module_refuses_nan_under_error_policy_and_bad_shapes():
    scaler = FeatureScaler.fit(candidate_frame(), FeatureScalingConfig(nan_policy="error"))
    scripted = torch.jit.script(scaler.as_module())
    raw = torch.zeros(2, 9)
    raw[1, 6] = float("nan")
    with pytest.raises(Exception, match="NaN or infinite"):
        scripted(raw)
    with pytest.raises(Exception, match=r"shape \(N, 9\)"):
        scripted(torch.zeros(2, 8))


def test_bad_inputs_raise_clear_errors():
    frame = candidate_frame()
    with pytest.raises(ValueError, match=r"lacks feature column\(s\) \['mag'\]"):
        FeatureScaler.fit(frame.drop(columns=["mag"]))
    text = frame.astype({"flags": object})
    text.loc[0, "flags"] = "bad"
    with pytest.raises(ValueError, match="must be numeric"):
        FeatureScaler.fit(text)
    with pytest.raises(ValueError, match="zero training rows"):
        FeatureScaler.fit(frame.iloc[:0])
    with pytest.raises(ValueError, match=r"shape \(n, 9\)"):
        FeatureScaler.fit(frame).transform_array(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="nan_policy"):
        FeatureScalingConfig(nan_policy="zero")
    with pytest.raises(ValueError, match="clip"):
        FeatureScalingConfig(clip=0.0)
