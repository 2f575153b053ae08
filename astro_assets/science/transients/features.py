"""Tabular candidate features and their robust scaling for the real/bogus classifier.

The scaling is fitted on the training split only (no information from validation or test jobs
leaks into it), is serializable to JSON, and is also available as a TorchScript-compatible
module so an exported model takes raw catalogue values and scales them itself.

Per column, in order:

1. transform: ``signed_log1p`` (``sign(v) * log1p(|v|)``) for heavy-tailed columns (flux, peak,
   npix: they span orders of magnitude and can be negative on difference images), identity
   otherwise;
2. robust standardization: ``(t - median) / scale`` with ``scale = IQR / 1.349`` (the standard
   deviation for Gaussian data); when the IQR is zero (e.g. a flags column that is almost always
   0) the standard deviation is used, and 1.0 when that is zero too;
3. clipping to ``[-clip, clip]`` so one extreme catalogue value cannot dominate a batch.

Missing values (NaN or infinite) follow an explicit policy, recorded in the scaler (and so in an
exported model):

- ``"impute_median"`` (default): a missing value becomes the training median (0 after scaling)
  and one missing-indicator output per column (1.0 where the raw value was missing) is appended,
  so the model can still use the fact that a value is missing. Catalogues have missing values
  by construction: ``mag = -2.5 log10(flux)`` is NaN for the non-positive fluxes that
  subtraction residuals produce, and that absence is itself informative. The number of missing
  values per column in the training split is recorded.
- ``"error"``: any missing value raises :class:`MissingFeatureError` naming the columns.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from astro_assets.science.transients.training_params import FeatureScalingConfig

FEATURE_COLUMNS: tuple[str, ...] = (
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
HEAVY_TAILED_COLUMNS: frozenset[str] = frozenset({"flux", "peak", "npix"})
_GAUSSIAN_IQR_TO_SIGMA = 1.349
SCALER_FORMAT_VERSION = 1


class MissingFeatureError(ValueError):
    """Raised when features contain NaN or infinite values under the ``"error"`` policy."""


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """Return ``sign(v) * log1p(|v|)`` elementwise (float64); compresses heavy tails, keeps sign."""
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.log1p(np.abs(values))


def feature_matrix(frame: pd.DataFrame, columns: Sequence[str] = FEATURE_COLUMNS) -> np.ndarray:
    """Return the raw feature columns of ``frame`` as a float64 array of shape (n, len(columns)).

    Raises
    ------
    ValueError
        If a column is missing or not numeric.
    """
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(
            f"The candidate index lacks feature column(s) {missing}; expected all of "
            f"{list(columns)} (the master_index.csv schema)."
        )
    try:
        return frame.loc[:, list(columns)].to_numpy(dtype=np.float64, copy=True)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Feature columns {list(columns)} must be numeric; could not convert them: {error}"
        ) from error


def _describe_missing(values: np.ndarray, columns: Sequence[str]) -> str:
    bad = ~np.isfinite(values)
    counts = {name: int(count) for name, count in zip(columns, bad.sum(axis=0), strict=True)}
    return ", ".join(f"{name}: {count}" for name, count in counts.items() if count)


@dataclasses.dataclass(frozen=True)
class FeatureScaler:
    """A fitted robust scaling of :data:`FEATURE_COLUMNS` (see the module docstring).

    Build it with :meth:`fit` on the training split; never fit it on validation or test rows.

    Attributes
    ----------
    columns : tuple of str
    log_columns : tuple of str
        Columns transformed with signed log1p before standardization.
    center, scale : tuple of float
        Per-column median and robust scale of the transformed training values.
    config : FeatureScalingConfig
    n_fit : int
        Number of training rows used.
    imputed_at_fit : dict of str to int
        Non-finite values per column in the training rows (all zero under ``"error"``).

    Outputs of :meth:`transform` (``n_outputs`` columns): the scaled columns, followed under
    ``"impute_median"`` by one missing indicator per column, in the same order.
    """

    columns: tuple[str, ...]
    log_columns: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    config: FeatureScalingConfig
    n_fit: int
    imputed_at_fit: Mapping[str, int]

    @classmethod
    def fit(
        cls,
        train_frame: pd.DataFrame,
        config: FeatureScalingConfig | None = None,
        columns: Sequence[str] = FEATURE_COLUMNS,
    ) -> FeatureScaler:
        """Fit the scaling on the rows of ``train_frame`` (the training split only).

        Parameters
        ----------
        train_frame : pandas.DataFrame
            Training candidates with the columns in ``columns``; not modified.
        config : FeatureScalingConfig, optional
        columns : sequence of str

        Raises
        ------
        ValueError
            If ``train_frame`` is empty or a column is missing or not numeric.
        MissingFeatureError
            If a value is NaN/inf and ``config.nan_policy == "error"``, or a column has no
            finite value at all.
        """
        config = config or FeatureScalingConfig()
        columns = tuple(columns)
        raw = feature_matrix(train_frame, columns)
        if raw.shape[0] == 0:
            raise ValueError("Cannot fit the feature scaling on zero training rows.")
        finite = np.isfinite(raw)
        if config.nan_policy == "error" and not finite.all():
            raise MissingFeatureError(
                "Training features contain NaN or infinite values ("
                + _describe_missing(raw, columns)
                + "). Clean the catalogue, or use nan_policy='impute_median' to replace them by "
                "the training median with a missing indicator."
            )
        log_columns = tuple(name for name in columns if name in HEAVY_TAILED_COLUMNS)
        centers: list[float] = []
        scales: list[float] = []
        for index, name in enumerate(columns):
            column = raw[finite[:, index], index]
            if column.size == 0:
                raise MissingFeatureError(
                    f"Feature column {name!r} has no finite value in the training split; "
                    "a scaling cannot be fitted. Check the catalogue."
                )
            if name in log_columns:
                column = signed_log1p(column)
            q25, median, q75 = np.percentile(column, [25.0, 50.0, 75.0])
            scale = (q75 - q25) / _GAUSSIAN_IQR_TO_SIGMA
            if not scale > 0:
                scale = float(np.std(column))
            if not scale > 0:
                scale = 1.0
            centers.append(float(median))
            scales.append(float(scale))
        imputed = {name: int(np.sum(~finite[:, i])) for i, name in enumerate(columns)}
        return cls(
            columns=columns,
            log_columns=log_columns,
            center=tuple(centers),
            scale=tuple(scales),
            config=config,
            n_fit=int(raw.shape[0]),
            imputed_at_fit=imputed,
        )

    @property
    def n_outputs(self) -> int:
        """Number of output columns: ``len(columns)``, doubled by the missing indicators."""
        factor = 2 if self.config.nan_policy == "impute_median" else 1
        return factor * len(self.columns)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Scale the feature columns of ``frame``.

        Returns
        -------
        numpy.ndarray
            float32, shape (n, n_outputs): scaled values in ``[-clip, clip]``, then (under
            ``"impute_median"``) missing indicators in {0, 1}.
        """
        return self.transform_array(feature_matrix(frame, self.columns))

    def transform_array(self, raw: np.ndarray) -> np.ndarray:
        """Scale a raw feature array of shape (n, len(columns)) (any real dtype); float32 out."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != len(self.columns):
            raise ValueError(
                f"Raw features must have shape (n, {len(self.columns)}) in the column order "
                f"{list(self.columns)}, got {raw.shape}."
            )
        finite = np.isfinite(raw)
        if self.config.nan_policy == "error" and not finite.all():
            raise MissingFeatureError(
                "Features contain NaN or infinite values ("
                + _describe_missing(raw, self.columns)
                + "); the model was trained with nan_policy='error'. Clean the catalogue or "
                "retrain with nan_policy='impute_median'."
            )
        log_mask = np.array([name in self.log_columns for name in self.columns])
        transformed = np.where(log_mask, signed_log1p(np.where(finite, raw, 0.0)), raw)
        scaled = (transformed - np.asarray(self.center)) / np.asarray(self.scale)
        scaled = np.clip(np.where(finite, scaled, 0.0), -self.config.clip, self.config.clip)
        if self.config.nan_policy == "impute_median":
            scaled = np.concatenate([scaled, (~finite).astype(np.float64)], axis=1)
        return scaled.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable description (inverse of :meth:`from_dict`)."""
        return {
            "format_version": SCALER_FORMAT_VERSION,
            "columns": list(self.columns),
            "log_columns": list(self.log_columns),
            "center": list(self.center),
            "scale": list(self.scale),
            "clip": self.config.clip,
            "nan_policy": self.config.nan_policy,
            "n_fit": self.n_fit,
            "imputed_at_fit": dict(self.imputed_at_fit),
        }

    def to_json(self) -> str:
        """Return :meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureScaler:
        """Rebuild a scaler from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If the format version is unknown or fields are missing or inconsistent.
        """
        version = data.get("format_version")
        if version != SCALER_FORMAT_VERSION:
            raise ValueError(
                f"Feature scaler format version {version!r} is not supported (expected "
                f"{SCALER_FORMAT_VERSION}); retrain the model with this version of astro_assets."
            )
        try:
            columns = tuple(str(name) for name in data["columns"])
            scaler = cls(
                columns=columns,
                log_columns=tuple(str(name) for name in data["log_columns"]),
                center=tuple(float(v) for v in data["center"]),
                scale=tuple(float(v) for v in data["scale"]),
                config=FeatureScalingConfig(
                    clip=float(data["clip"]), nan_policy=str(data["nan_policy"])
                ),
                n_fit=int(data["n_fit"]),
                imputed_at_fit={str(k): int(v) for k, v in data["imputed_at_fit"].items()},
            )
        except KeyError as error:
            raise ValueError(f"Feature scaler description lacks the field {error}.") from error
        if not (len(scaler.center) == len(scaler.scale) == len(columns)):
            raise ValueError("Feature scaler description has inconsistent column counts.")
        if not all(s > 0 for s in scaler.scale):
            raise ValueError("Feature scaler description has a non-positive scale.")
        return scaler

    @classmethod
    def from_json(cls, text: str) -> FeatureScaler:
        """Rebuild a scaler from :meth:`to_json` text."""
        return cls.from_dict(json.loads(text))

    def as_module(self) -> FeatureScaling:
        """Return the scaling as a TorchScript-compatible :class:`FeatureScaling` module."""
        return FeatureScaling(self)


class FeatureScaling(nn.Module):
    """The fitted scaling as a torch module: raw features (N, F) -> float32 (N, n_outputs).

    Its parameters are buffers (``log_mask``, ``center``, ``scale``), so they travel with a
    state dict and inside a TorchScript export. Identical to :meth:`FeatureScaler.transform_array`
    up to float32 rounding.
    """

    def __init__(self, scaler: FeatureScaler) -> None:
        super().__init__()
        self.register_buffer(
            "log_mask",
            torch.tensor([name in scaler.log_columns for name in scaler.columns]),
        )
        self.register_buffer("center", torch.tensor(scaler.center, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scaler.scale, dtype=torch.float32))
        self.clip = float(scaler.config.clip)
        self.impute_missing = scaler.config.nan_policy == "impute_median"
        self.n_features = len(scaler.columns)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if raw.dim() != 2 or raw.size(1) != self.n_features:
            raise ValueError(
                "raw features must have shape (N, "
                + str(self.n_features)
                + "), got "
                + str(list(raw.shape))
            )
        raw = raw.to(torch.float32)
        finite = torch.isfinite(raw)
        if not self.impute_missing and not bool(finite.all()):
            raise ValueError(
                "features contain NaN or infinite values; the model was trained with "
                "nan_policy='error': clean the catalogue or retrain with 'impute_median'"
            )
        safe = torch.where(finite, raw, torch.zeros_like(raw))
        logged = torch.sign(safe) * torch.log1p(torch.abs(safe))
        transformed = torch.where(self.log_mask, logged, safe)
        scaled = (transformed - self.center) / self.scale
        scaled = torch.where(finite, scaled, torch.zeros_like(scaled))
        scaled = torch.clamp(scaled, -self.clip, self.clip)
        if self.impute_missing:
            scaled = torch.cat([scaled, (~finite).to(torch.float32)], dim=1)
        return scaled
