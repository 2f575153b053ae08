"""Candidate cutouts from memory-mapped job tensors, and a torch Dataset over the master index.

Pixel convention (photutils, and the ``x``/``y`` columns of ``master_index.csv``): ``x`` is the
column, ``y`` the row, and integer coordinates are pixel centres, so pixel ``i`` covers
``[i - 0.5, i + 0.5)``. The pixel holding a candidate is therefore ``floor(x + 0.5)``: exact
half-integers (pixel boundaries) go to the upper pixel, consistently for negative coordinates
too (``x = -0.5`` is pixel 0). Banker's rounding (``numpy.round``) would send 0.5 to 0 but 1.5 to
2, a position-dependent half-pixel jitter; it is not used.

The candidate's pixel lands at index ``(size // 2, size // 2)`` of the cutout (32, 32 for 64 x 64).
Where the window runs past the image edge the missing pixels are filled with ``pad_value``
(0.0: the ZScale floor, i.e. black) so the candidate stays centred, and an extra validity channel
is 1 for pixels inside the image and 0 for padding, so a network can tell padding from dark sky.
"""

from __future__ import annotations

import collections
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from astro_assets.science.transients.features import FEATURE_COLUMNS, feature_matrix

DEFAULT_CUTOUT_SIZE = 64
DEFAULT_PAD_VALUE = 0.0
# The 8 symmetries of the square: (number of 90-degree rotations, horizontal flip).
_DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def candidate_pixel(coordinate: float) -> int:
    """Return the index of the pixel holding ``coordinate`` (pixel centres at integers).

    ``floor(coordinate + 0.5)``; half-integers go to the upper pixel.

    Raises
    ------
    ValueError
        If ``coordinate`` is not finite.
    """
    value = float(coordinate)
    if not math.isfinite(value):
        raise ValueError(f"Candidate coordinate must be finite, got {coordinate!r}.")
    return math.floor(value + 0.5)


def extract_cutout(
    tensor: np.ndarray,
    x: float,
    y: float,
    size: int = DEFAULT_CUTOUT_SIZE,
    pad_value: float = DEFAULT_PAD_VALUE,
) -> np.ndarray:
    """Cut a ``size`` x ``size`` window centred on the candidate at column ``x``, row ``y``.

    Only the window is read, so ``tensor`` can be a read-only memory map of a 4090 x 4090 x 4
    job tensor; it is never modified.

    Parameters
    ----------
    tensor : numpy.ndarray or numpy.memmap
        Shape (H, W, C), any real dtype (float32 in [0, 1] for job tensors).
    x, y : float
        Candidate column and row in pixels, 0 = centre of the first pixel.
    size : int
        Side of the square cutout in pixels (> 0).
    pad_value : float
        Value of the data channels outside the image.

    Returns
    -------
    numpy.ndarray
        float32, shape (size, size, C + 1). Channels 0..C-1 are the tensor's channels, channel C
        is the validity mask (1.0 inside the image, 0.0 padding). The candidate's pixel is at
        ``[size // 2, size // 2]``.

    Raises
    ------
    ValueError
        If ``tensor`` is not 3-D or empty, ``size`` is not a positive integer, a coordinate is
        not finite, or the candidate's pixel lies outside the image.
    """
    if tensor.ndim != 3 or min(tensor.shape) == 0:
        raise ValueError(
            f"Job tensor must have shape (H, W, C) with no empty axis, got {tensor.shape}."
        )
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
        raise ValueError(f"Cutout size must be a positive integer, got {size!r}.")
    height, width, channels = tensor.shape
    column, row = candidate_pixel(x), candidate_pixel(y)
    if not (0 <= column < width and 0 <= row < height):
        raise ValueError(
            f"Candidate at x={x}, y={y} (pixel column {column}, row {row}) lies outside the "
            f"{width} x {height} image; check the catalogue's pixel convention (0 = centre of "
            "the first pixel) and that it belongs to this job."
        )
    half = size // 2
    row0, col0 = row - half, column - half
    src_r0, src_r1 = max(row0, 0), min(row0 + size, height)
    src_c0, src_c1 = max(col0, 0), min(col0 + size, width)
    dst_r0, dst_c0 = src_r0 - row0, src_c0 - col0
    dst_r1, dst_c1 = dst_r0 + (src_r1 - src_r0), dst_c0 + (src_c1 - src_c0)

    cutout = np.full((size, size, channels + 1), pad_value, dtype=np.float32)
    cutout[..., channels] = 0.0
    cutout[dst_r0:dst_r1, dst_c0:dst_c1, :channels] = tensor[src_r0:src_r1, src_c0:src_c1, :]
    cutout[dst_r0:dst_r1, dst_c0:dst_c1, channels] = 1.0
    return cutout


def dihedral_transform(cutout: np.ndarray, rotations: int, flip: bool) -> np.ndarray:
    """Rotate a (size, size, C) cutout by ``rotations`` x 90 degrees, then flip it left-right.

    The centre pixel of an odd-sized cutout is a fixed point (even-sized cutouts are augmented
    by transforming an odd window one pixel larger and cropping it, see
    :class:`CutoutDataset`). Returns a new contiguous array.
    """
    out = np.rot90(cutout, k=rotations, axes=(0, 1))
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _resolve_inside(dataset_dir: Path, relative: str) -> Path:
    path = (dataset_dir / relative).resolve()
    if not path.is_relative_to(dataset_dir):
        raise ValueError(
            f"image_filename {relative!r} points outside the dataset directory {dataset_dir}; "
            "image paths in master_index.csv must be relative paths inside it."
        )
    return path


class CutoutDataset(Dataset):
    """Candidates of a master index as (cutout, raw features, label) torch samples.

    Each job tensor is opened once per process with ``np.load(mmap_mode="r")`` and kept in a
    small LRU cache of memory maps; a sample reads only its window, never the whole tensor.
    The cache is not pickled, so each DataLoader worker opens its own maps.

    Parameters
    ----------
    index : pandas.DataFrame
        Rows of ``master_index.csv`` (columns ``jid, x, y, image_filename`` and
        :data:`FEATURE_COLUMNS`; ``label`` optional: NaN labels when absent). Not modified.
        Every candidate must lie inside its image: the master index also lists those outside
        it (``in_image`` False), so select ``index[index["in_image"]]`` first; an item outside
        its image raises ``ValueError`` saying so.
    dataset_dir : path-like
        Directory that ``image_filename`` is relative to.
    cutout_size : int
    pad_value : float
    augment : bool
        Apply one of the 8 flips/90-degree rotations per sample (for training only).
    seed : int
        Seed of the augmentation; the transform of a sample is a function of
        ``(seed, epoch, position)`` so it is reproducible with any number of workers.
    max_open_tensors : int
        Memory maps kept open per process.

    Items
    -----
    cutout : torch.Tensor, float32, (C + 1, size, size); channel C is validity.
    features : torch.Tensor, float32, (len(FEATURE_COLUMNS),), raw (unscaled) values.
    label : torch.Tensor, float32 scalar (1 real, 0 bogus, NaN unknown).
    """

    def __init__(
        self,
        index: pd.DataFrame,
        dataset_dir: str | os.PathLike[str],
        *,
        cutout_size: int = DEFAULT_CUTOUT_SIZE,
        pad_value: float = DEFAULT_PAD_VALUE,
        augment: bool = False,
        seed: int = 0,
        max_open_tensors: int = 16,
    ) -> None:
        required = ("jid", "x", "y", "image_filename")
        missing = [name for name in required if name not in index.columns]
        if missing:
            raise ValueError(
                f"The candidate index lacks column(s) {missing}; expected the master_index.csv "
                "schema (id, jid, x, y, features, label, image_filename, split)."
            )
        if max_open_tensors < 1:
            raise ValueError(f"max_open_tensors must be >= 1, got {max_open_tensors}.")
        self.dataset_dir = Path(dataset_dir).resolve()
        self.cutout_size = int(cutout_size)
        self.pad_value = float(pad_value)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.max_open_tensors = int(max_open_tensors)
        self.epoch = 0
        self.jids = index["jid"].astype(str).to_numpy()
        self.row_labels = index.index.tolist()
        self.xs = index["x"].to_numpy(dtype=np.float64)
        self.ys = index["y"].to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(self.xs) & np.isfinite(self.ys))
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} candidate(s) have non-finite x/y (first in job "
                f"{self.jids[np.argmax(bad)]!r}); drop or fix them in the index."
            )
        codes, names = pd.factorize(index["image_filename"].astype(str))
        resolved = [_resolve_inside(self.dataset_dir, name) for name in names]
        self.paths = [resolved[code] for code in codes]
        self.features = feature_matrix(index, FEATURE_COLUMNS).astype(np.float32)
        if "label" in index.columns:
            self.labels = index["label"].to_numpy(dtype=np.float32)
        else:
            self.labels = np.full(len(index), np.nan, dtype=np.float32)
        self._tensors: collections.OrderedDict[Path, np.ndarray] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.jids)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch`` (call before iterating each epoch)."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tensors"] = collections.OrderedDict()
        return state

    def tensor(self, path: Path) -> np.ndarray:
        """Return the read-only memory map of the job tensor at ``path`` (cached)."""
        cached = self._tensors.get(path)
        if cached is not None:
            self._tensors.move_to_end(path)
            return cached
        if not path.is_file():
            raise FileNotFoundError(
                f"Job tensor {path} listed in the index does not exist; rebuild the dataset."
            )
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.ndim != 3:
            raise ValueError(f"Job tensor {path} must have shape (H, W, C), got {array.shape}.")
        self._tensors[path] = array
        while len(self._tensors) > self.max_open_tensors:
            self._tensors.popitem(last=False)
        return array

    def in_image(self) -> np.ndarray:
        """Bool array (len,): True where the candidate's pixel lies inside its job tensor.

        Only the ``.npy`` headers are read (through the memory maps).
        """
        codes, unique_paths = pd.factorize(pd.Series([str(p) for p in self.paths], dtype=object))
        shapes = np.array(
            [self.tensor(Path(path)).shape[:2] for path in unique_paths], dtype=np.float64
        ).reshape(-1, 2)
        columns = np.floor(self.xs + 0.5)
        rows = np.floor(self.ys + 0.5)
        height, width = shapes[codes, 0], shapes[codes, 1]
        return (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tensor = self.tensor(self.paths[position])
        height, width = tensor.shape[:2]
        x, y = self.xs[position], self.ys[position]
        if not (0 <= candidate_pixel(x) < width and 0 <= candidate_pixel(y) < height):
            # The master index keeps such candidates (in_image False), so a dataset built from
            # an unfiltered index meets them; the remedy is on the caller's side.
            raise ValueError(
                f"Item {position} of the dataset (row {self.row_labels[position]!r} of its index, "
                f"job {self.jids[position]!r}, x={x}, y={y}) lies outside its {width} x {height} "
                "image, so it has no cutout; build the "
                "dataset from the candidates inside their image: "
                'index[index["in_image"]] (or drop_outside_image(index, dataset_dir)).'
            )
        # An odd window keeps the candidate's pixel fixed under rotation; cropping it back to
        # cutout_size keeps that pixel at index cutout_size // 2.
        window = self.cutout_size | 1 if self.augment else self.cutout_size
        cutout = extract_cutout(
            tensor, self.xs[position], self.ys[position], window, self.pad_value
        )
        if not np.isfinite(cutout).all():
            raise ValueError(
                f"Job tensor of {self.jids[position]!r} holds NaN/inf near x="
                f"{self.xs[position]}, y={self.ys[position]}; job tensors must be finite "
                "(ZScale-normalized to [0, 1])."
            )
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, int(position)))
            rotations, flip = _DIHEDRAL[int(rng.integers(len(_DIHEDRAL)))]
            cutout = dihedral_transform(cutout, rotations, flip)
            cutout = cutout[: self.cutout_size, : self.cutout_size]
        return (
            torch.from_numpy(np.ascontiguousarray(cutout.transpose(2, 0, 1))),
            torch.from_numpy(self.features[position].copy()),
            torch.tensor(self.labels[position]),
        )


def drop_outside_image(
    index: pd.DataFrame, dataset_dir: str | os.PathLike[str]
) -> tuple[pd.DataFrame, int]:
    """Keep the candidates whose pixel lies inside their job tensor.

    Catalogues can list detections just beyond the image edge (the master index keeps them,
    flagged ``in_image`` False); no centred cutout exists for them.

    Returns
    -------
    kept : pandas.DataFrame
        The rows inside their image (a copy; ``index`` is not modified).
    n_dropped : int
    """
    inside = CutoutDataset(index, dataset_dir).in_image()
    return index[inside].copy(), int(np.sum(~inside))
