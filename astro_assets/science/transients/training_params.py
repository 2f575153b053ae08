"""Parameters of the real/bogus model and of its feature scaling, free of torch.

Kept apart from :mod:`.cnn` and :mod:`.features` so that code which only needs to know the
parameters (for instance the Dagster run configuration) does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

NAN_POLICIES: tuple[str, ...] = ("impute_median", "error")
DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class FeatureScalingConfig:
    """Parameters of the feature scaling.

    Attributes
    ----------
    clip : float
        Scaled values are clipped to ``[-clip, clip]`` (in robust standard deviations).
    nan_policy : str
            ``"impute_median"``: NaN/inf are replaced by the training median of their column and
        flagged in appended missing-indicator outputs.
        ``"error"``: NaN/inf features raise :class:`MissingFeatureError`.
    """

    clip: float = 5.0
    nan_policy: str = "impute_median"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be a finite positive number, got {self.clip!r}.")
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Parameters of the network and of its training.

    Attributes
    ----------
    epochs : int
        Maximum number of passes over the training split.
    batch_size : int
        Candidates per optimization step.
    learning_rate, weight_decay : float
        AdamW parameters.
    seed : int
        Seeds weight initialization, shuffling, dropout and augmentation.
    time_limit_s : float or None
        Wall-clock budget; training stops after the batch that exceeds it (that partial
        epoch is still validated). None: no limit.
    patience : int
        Stop after this many epochs without a better epoch (see the module docstring).
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    num_workers : int or None
        DataLoader worker processes (0 = load in the training process). None: 0 on the CPU,
        where the network is the bottleneck and workers only compete with it for the cores;
        on CUDA one per core but one, at most 8, since one process cannot cut cutouts as
        fast as the GPU trains on them.
    cutout_size : int
        Cutout side in pixels; at least ``2 ** len(conv_channels)``.
    augment : bool
        Random flips and 90-degree rotations of training cutouts.
    balance_classes : bool
        Weight real candidates by n_bogus / n_real in the loss.
    mixed_precision : bool
        bfloat16 autocast on CUDA (ignored on CPU).
    conv_channels : tuple of int
        Output channels of the convolution stages (each: 3x3 conv, group norm, ReLU, 2x2 max
        pool).
    feature_hidden, head_hidden : int
        Widths of the feature MLP and of the joint head.
    dropout : float
        Dropout before the output layer.
    feature_clip : float
        Scaled features are clipped to +-feature_clip.
    nan_policy : str
        Missing features: ``"impute_median"`` (median + missing indicator) or ``"error"``
        (see :mod:`.features`).
    """

    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    time_limit_s: float | None = 3600.0
    patience: int = 5
    device: str = "auto"
    num_workers: int | None = None
    cutout_size: int = 64
    augment: bool = True
    balance_classes: bool = True
    mixed_precision: bool = True
    conv_channels: tuple[int, ...] = (16, 32, 64)
    feature_hidden: int = 32
    head_hidden: int = 64
    dropout: float = 0.2
    feature_clip: float = 5.0
    nan_policy: str = "impute_median"

    def __post_init__(self) -> None:
        positive_ints = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "patience": self.patience,
            "cutout_size": self.cutout_size,
            "feature_hidden": self.feature_hidden,
            "head_hidden": self.head_hidden,
        }
        for name, value in positive_ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        if not self.conv_channels or any(int(c) < 1 for c in self.conv_channels):
            raise ValueError(
                f"TrainConfig.conv_channels must be non-empty positive integers, got "
                f"{self.conv_channels!r}."
            )
        if self.cutout_size < 2 ** len(self.conv_channels):
            raise ValueError(
                f"cutout_size {self.cutout_size} is too small for {len(self.conv_channels)} "
                f"pooling stages; use at least {2 ** len(self.conv_channels)} or fewer stages."
            )
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "learning_rate" and not value):
                raise ValueError(f"TrainConfig.{name} must be finite and positive, got {value}.")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive or None, got {self.time_limit_s}.")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}.")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        FeatureScalingConfig(clip=self.feature_clip, nan_policy=self.nan_policy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict."""
        data = dataclasses.asdict(self)
        data["conv_channels"] = list(self.conv_channels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["conv_channels"] = tuple(values["conv_channels"])
        return cls(**values)
