"""Colour layouts of a median: mono, RGB (H, W, 3) and raw CFA mosaics (Bayer, CYYM).

Dust shadows are much larger than a CFA cell and are the same in every colour, so dust is
located once on a luminance view; inpainting, matching and the flat ratio are then computed per
colour plane, where neighbouring pixels measure the same colour. For a raw mosaic the planes are
the four sub-lattices of the 2x2 cell; combining them back gives a flat in mosaic layout, ready to
divide raw frames before debayering.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MOSAIC_COLORS = frozenset({"RGGB", "GRBG", "GBRG", "BGGR", "CYYM", "YCMY", "YMCY", "MYYC"})
PLANAR_COLORS = frozenset({"RGB", "BGR"})


def _layout(image, color: str) -> str:
    shape = np.shape(image)
    if color in PLANAR_COLORS:
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"a {color} image must have shape (H, W, 3), got {shape}")
        return "planar"
    if len(shape) != 2:
        raise ValueError(f"a {color} image must have shape (H, W), got {shape}")
    if color in MOSAIC_COLORS:
        if shape[0] < 4 or shape[1] < 4:
            raise ValueError(f"a {color} mosaic needs at least 4x4 pixels, got {shape}")
        return "mosaic"
    if color == "MONO":
        return "mono"
    raise ValueError(f"unknown colour layout {color!r}: expected MONO, RGB, BGR or a CFA pattern")


def luminance_view(image: np.ndarray, color: str) -> np.ndarray:
    """A 2-D float32 image in which to look for dust.

    Parameters
    ----------
    image : np.ndarray
        (H, W) mono or mosaic, or (H, W, 3) RGB, any real dtype.
    color : str
        ``"MONO"``, ``"RGB"``/``"BGR"`` or a CFA pattern such as ``"RGGB"``.

    Returns
    -------
    np.ndarray
        float32: (H, W) for mono, the channel mean for RGB, and the mean of each 2x2 cell
        (shape (H // 2, W // 2)) for a mosaic, which removes the CFA checkerboard.
    """
    return LuminanceFrame(np.asarray(image), color)[:, :]


class LuminanceFrame:
    """The :func:`luminance_view` of one raw frame, computed only for the windows asked for.

    Parameters
    ----------
    frame : np.ndarray
        (H, W) mono or mosaic, or (H, W, 3) RGB frame, any real dtype; typically a read-only
        memory-mapped frame of a video, so that a window reads only its own rows.
    color : str
        As for :func:`luminance_view`.

    Attributes
    ----------
    shape : tuple of int
        Shape of the whole luminance view.

    Notes
    -----
    Indexing takes two slices with step 1 (``view[r0:r1, c0:c1]``) and returns a new float32
    array; ``view[:, :]`` is ``luminance_view(frame, color)``, and a smaller window equals
    the same window of it (to float32 rounding: a mean over another extent may add in
    another order).
    """

    def __init__(self, frame: np.ndarray, color: str) -> None:
        self._layout = _layout(frame, color)
        self._frame = frame
        height, width = frame.shape[:2]
        self.shape = (height // 2, width // 2) if self._layout == "mosaic" else (height, width)

    def __getitem__(self, window: tuple[slice, slice]) -> np.ndarray:
        rows, cols = window
        row0, row1, row_step = rows.indices(self.shape[0])
        col0, col1, col_step = cols.indices(self.shape[1])
        if row_step != 1 or col_step != 1:
            raise ValueError("a luminance window takes slices with step 1")
        if self._layout == "mosaic":
            raw = np.asarray(self._frame[2 * row0 : 2 * row1, 2 * col0 : 2 * col1], np.float32)
            cells = raw.reshape(row1 - row0, 2, col1 - col0, 2)
            return cells.mean(axis=(1, 3), dtype=np.float32)
        raw = np.asarray(self._frame[row0:row1, col0:col1])
        if self._layout == "planar":
            return raw.mean(axis=2, dtype=np.float32)
        return raw.astype(np.float32)


class LuminanceVideo:
    """The frames of a video as :func:`luminance_view` images, each made when asked for.

    Parameters
    ----------
    frames : sequence of np.ndarray
        (n, H, W) mono or mosaic, or (n, H, W, 3) RGB frames (for example the lazy
        ``SerVideo.frames``).
    color : str
        As for :func:`luminance_view`.

    Attributes
    ----------
    cell_px : int
        Raw pixels per luminance pixel along each axis: 2 for a mosaic, else 1. Positions
        and sizes measured on the views are ``cell_px`` times larger on the raw frames.
    """

    def __init__(self, frames, color: str) -> None:
        if len(frames) == 0:
            raise ValueError("the video holds no frame")
        self._frames = frames
        self._color = color
        self.cell_px = 2 if _layout(frames[0], color) == "mosaic" else 1

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        """(h, w) float32 luminance view of frame ``index``."""
        return luminance_view(np.asarray(self._frames[index]), self._color)

    def window_view(self, index: int) -> LuminanceFrame:
        """Frame ``index`` as a :class:`LuminanceFrame`, which reads only the windows asked for."""
        return LuminanceFrame(self._frames[index], self._color)


def mask_to_full(mask: np.ndarray, image_shape: tuple[int, ...], color: str) -> np.ndarray:
    """Bring a mask found on ``luminance_view`` back to the (H, W) pixel grid of the image.

    For a mosaic each cell value is repeated over its 2x2 pixels (and over a last odd row or
    column); for mono and RGB the mask is already at full size and is returned as a copy.
    """
    height, width = image_shape[:2]
    mask = np.asarray(mask)
    if color not in MOSAIC_COLORS:
        if mask.shape != (height, width):
            raise ValueError(
                f"mask shape {mask.shape} does not match the image ({height}, {width})"
            )
        return mask.copy()
    if mask.shape != (height // 2, width // 2):
        raise ValueError(
            f"mask shape {mask.shape} does not match the mosaic's cells "
            f"({height // 2}, {width // 2})"
        )
    full = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
    return np.pad(full, ((0, height - full.shape[0]), (0, width - full.shape[1])), mode="edge")


def mask_to_cells(mask: np.ndarray, color: str) -> np.ndarray:
    """Bring an (H, W) mask on the image's pixel grid to the grid of :func:`luminance_view`.

    For a mosaic each 2x2 cell takes the largest value of its pixels (a cell is masked when
    any of its pixels is; a last odd row or column is dropped); for mono and RGB the mask is
    returned as a copy.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if color not in MOSAIC_COLORS:
        return mask.copy()
    height, width = (mask.shape[0] // 2) * 2, (mask.shape[1] // 2) * 2
    cells = mask[:height, :width]
    return np.maximum.reduce([cells[dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)])


def split_planes(image: np.ndarray, color: str) -> list[np.ndarray]:
    """The colour planes of ``image`` as 2-D float32 copies.

    One plane for mono, three for RGB (channel order kept), four for a mosaic: the sub-lattices
    ``[0::2, 0::2]``, ``[0::2, 1::2]``, ``[1::2, 0::2]``, ``[1::2, 1::2]``.
    """
    return [
        np.array(plane, dtype=np.float32)
        for plane in plane_views(np.asarray(image, dtype=np.float32), color)
    ]


def plane_views(frame, color: str) -> list:
    """The colour planes of one frame, in the order of :func:`split_planes`, as slices of it.

    Parameters
    ----------
    frame : array-like
        (H, W) mono or mosaic, or (H, W, 3) RGB, that can be sliced with steps: an array (a
        memory-mapped frame stays unread), or a frame computed for the window it is sliced
        with (:class:`.darks.DarkSubtractedFrame`).

    Returns
    -------
    list
        One slice per plane, as ``frame`` returns it (views of an array).
    """
    return [frame[window] for window in _plane_windows(frame, color)]


def _plane_windows(frame, color: str) -> list[tuple]:
    """The index of each plane of :func:`plane_views` in a frame."""
    layout = _layout(frame, color)
    if layout == "mono":
        return [(slice(None), slice(None))]
    if layout == "planar":
        return [(slice(None), slice(None), c) for c in range(3)]
    return [(slice(dy, None, 2), slice(dx, None, 2)) for dy in (0, 1) for dx in (0, 1)]


class PlaneVideo:
    """One colour plane of chosen frames of a video, each sliced from its frame when asked for.

    Parameters
    ----------
    frames : sequence
        The video's frames, as for :func:`plane_views`.
    indices : sequence of int
        The frames to hold, in order.
    color : str
        As for :func:`luminance_view`.
    plane : int
        Position of the plane in :func:`plane_views`.
    """

    def __init__(self, frames, indices, color: str, plane: int) -> None:
        self._frames = frames
        self._indices = [int(i) for i in indices]
        self._color = color
        self._plane = plane

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, position: int) -> np.ndarray:
        frame = self._frames[self._indices[position]]
        return frame[_plane_windows(frame, self._color)[self._plane]]


def plane_names(color: str) -> list[str]:
    """The colours of the planes of :func:`split_planes`, in its order: ``MONO``; ``R``,
    ``G``, ``B`` for RGB and BGR videos (read in RGB order); a mosaic's colour at each of its
    sub-lattices (``R``, ``G``, ``G``, ``B`` for RGGB)."""
    if color in PLANAR_COLORS:
        return ["R", "G", "B"]
    if color in MOSAIC_COLORS:
        return list(color)
    if color == "MONO":
        return ["MONO"]
    raise ValueError(f"unknown colour layout {color!r}: expected MONO, RGB, BGR or a CFA pattern")


def plane_offsets(color: str) -> list[tuple[float, float]]:
    """Where each plane of :func:`split_planes` samples the scene, relative to the pixel
    centres of :func:`luminance_view`, in view pixels (rows, columns).

    A mosaic's luminance pixel is the mean of a 2 x 2 cell, centred between its four samples:
    the plane at ``[dy::2, dx::2]`` lies ``(dy - 0.5) / 2`` and ``(dx - 0.5) / 2`` of a view
    pixel from it. Mono and RGB planes lie on the view's pixels (0, 0).
    """
    if color in MOSAIC_COLORS:
        return [((dy - 0.5) / 2, (dx - 0.5) / 2) for dy in (0, 1) for dx in (0, 1)]
    return [(0.0, 0.0)] * len(plane_names(color))


def view_on_plane(
    view: np.ndarray | None, shape: tuple[int, ...], offset: tuple[float, float]
) -> np.ndarray:
    """An image on the grid of :func:`luminance_view` carried to a colour plane's samples.

    Parameters
    ----------
    view : np.ndarray or None
        (h, w) real image on the luminance view's grid, NaN where unknown; None: unknown
        everywhere.
    shape : tuple of int
        (H, W) of the plane; a mosaic's planes have one more row or column than its cells when
        the frame's side is odd.
    offset : tuple of float
        Where the plane samples the scene relative to the view's pixels, in view pixels
        (:func:`plane_offsets`). The view is interpolated linearly there: across a limb, a
        quarter of a cell is a tenth of the edge's fall.

    Returns
    -------
    np.ndarray
        (H, W) float32; NaN beyond the view and next to its unknown pixels.
    """
    out = np.full(shape, np.nan, dtype=np.float32)
    if view is not None:
        if any(offset):
            view = ndimage.shift(view, (-offset[0], -offset[1]), order=1, mode="nearest")
        rows, cols = min(shape[0], view.shape[0]), min(shape[1], view.shape[1])
        out[:rows, :cols] = view[:rows, :cols]
    return out


def merge_planes(planes: list[np.ndarray], image_shape: tuple[int, ...], color: str) -> np.ndarray:
    """Inverse of :func:`split_planes`: float32 array of ``image_shape``."""
    out = np.empty(image_shape, dtype=np.float32)
    layout = _layout(out, color)
    if layout == "mono":
        out[...] = planes[0]
    elif layout == "planar":
        for c in range(3):
            out[:, :, c] = planes[c]
    else:
        for plane, (dy, dx) in zip(planes, [(0, 0), (0, 1), (1, 0), (1, 1)], strict=True):
            out[dy::2, dx::2] = plane
    return out


def split_mask(mask: np.ndarray, color: str) -> list[np.ndarray]:
    """The full-size (H, W) mask sampled on each colour plane of :func:`split_planes`."""
    mask = np.asarray(mask)
    if color in MOSAIC_COLORS:
        return [mask[dy::2, dx::2].copy() for dy in (0, 1) for dx in (0, 1)]
    n_planes = 3 if color in PLANAR_COLORS else 1
    return [mask.copy() for _ in range(n_planes)]


def broadcast_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only view of an (H, W) mask over an (H, W) or (H, W, C) image of ``shape``."""
    mask = np.asarray(mask)
    return np.broadcast_to(mask[..., None] if len(shape) == 3 else mask, shape)
