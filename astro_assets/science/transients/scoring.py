"""Score every candidate of a dataset with an exported real/bogus model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from astro_assets.io.atomic import atomic_path
from astro_assets.science.transients.candidates import read_index_csv
from astro_assets.science.transients.cnn import load_model, resolve_device
from astro_assets.science.transients.cutouts import CutoutDataset
from astro_assets.science.transients.evaluation import predict_probabilities

SCORE_COLUMNS: tuple[str, ...] = ("jid", "id", "score")
INDEX_FILE = "master_index.csv"


def read_index(dataset_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``master_index.csv`` of ``dataset_dir``, typed by
    :func:`~astro_assets.science.transients.candidates.read_index_csv` (``jid`` kept as text,
    ids exact)."""
    path = Path(dataset_dir) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; build the dataset first (materialize master_index) or pass "
            "an index explicitly."
        )
    return read_index_csv(path)


def score_candidates(
    model_dir: str | os.PathLike[str],
    dataset_dir: str | os.PathLike[str],
    index: pd.DataFrame | None = None,
    *,
    batch_size: int = 256,
    device: str = "auto",
    num_workers: int = 0,
) -> pd.DataFrame:
    """Probability of being real for every candidate, with the exported TorchScript model.

    Labels and splits are not needed, so candidates of jobs never seen in training (or with no
    label at all) are scored the same way.

    Parameters
    ----------
    model_dir : path-like
        Directory written by :func:`~astro_assets.science.transients.cnn.export_model`.
    dataset_dir : path-like
        Dataset directory holding the job tensors (and ``master_index.csv`` unless ``index``
        is given).
    index : pandas.DataFrame, optional
        Candidates to score (master_index.csv schema, ``label``/``split`` optional); not
        modified.
    batch_size, num_workers : int
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``jid, id, score`` (score: float64 probability in [0, 1]), one row per
        candidate, in the order of the index. The score is NaN for a candidate whose pixel
        lies outside its image (catalogues can list such detections; no centred cutout
        exists for them).

    Raises
    ------
    ValueError
        If the index lacks ``id`` or another required column, or a candidate is invalid.
    IncompatibleModelError
        If the model directory has another format version.
    """
    loaded = load_model(model_dir)
    model = loaded.model.to(resolve_device(device))
    frame = read_index(dataset_dir) if index is None else index
    if "id" not in frame.columns:
        raise ValueError("The candidate index lacks the 'id' column (master_index.csv schema).")
    inside = CutoutDataset(frame, dataset_dir).in_image()
    scores = np.full(len(frame), np.nan)
    scores[inside] = predict_probabilities(
        model, frame[inside], dataset_dir, batch_size=batch_size, num_workers=num_workers
    )
    return pd.DataFrame(
        {
            "jid": frame["jid"].astype(str).to_numpy(),
            "id": frame["id"].to_numpy(),
            "score": scores,
        }
    )


def write_scores(scores: pd.DataFrame, out_csv: str | os.PathLike[str]) -> Path:
    """Write the ``jid, id, score`` table to ``out_csv`` atomically; return the path.

    Raises
    ------
    ValueError
        If the columns are not exactly ``jid, id, score``.
    """
    if tuple(scores.columns) != SCORE_COLUMNS:
        raise ValueError(
            f"Scores must have the columns {list(SCORE_COLUMNS)}, got {list(scores.columns)}; "
            "pass the output of score_candidates."
        )
    with atomic_path(out_csv) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.9g")
    return Path(out_csv)
