"""Benchmark: cutout reading from memory-mapped job tensors, and CNN training throughput.

In one run:

1. writes ``--tensors`` synthetic 4090 x 4090 x 4 float32 job tensors (268 MB each) with
   ``np.lib.format.open_memmap``, channel by channel, into ``--workdir``;
2. ``mmap``: cutouts per second through :class:`CutoutDataset` (each tensor opened once with
   ``np.load(mmap_mode="r")``, 64 x 64 windows read), over ``--cutouts`` candidates at random
   positions spread over all tensors;
3. ``full load``: cutouts per second when every sample loads its whole tensor with ``np.load``
   and then cuts (what the reference script did), over ``--full-loads`` samples; the ratio of
   the two is the speed-up;
4. training samples per second of :func:`train_model` on the CPU (default architecture, 64 x 64
   cutouts, batch 128, augmentation on) over ``--train-samples`` candidates of those tensors,
   for ``--epochs`` epochs; with ``--cuda`` the same on the GPU when one is available, once for
   each DataLoader worker count of ``--cuda-workers`` (``auto``: ``TrainConfig``'s default).

Both cutout measurements read files that were just written, so they are served from the page
cache; from a cold disk the whole-tensor load costs a 268 MB read per sample and the ratio
grows accordingly. The tensors are deleted at the end unless ``--keep``.

Usage::

    .venv/bin/python benchmarks/bench_cnn.py [--tensors 2] [--size 4090] [--cutouts 2000]
        [--full-loads 6] [--train-samples 1024] [--epochs 1] [--cuda] [--cuda-workers auto,0,8]
        [--workdir benchmarks/_work/cnn] [--keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from astro_assets.science.transients.cnn import TrainConfig, train_model
from astro_assets.science.transients.cutouts import CutoutDataset, extract_cutout
from astro_assets.science.transients.features import FEATURE_COLUMNS

REPOSITORY = Path(__file__).resolve().parent.parent


def write_tensors(workdir: Path, count: int, size: int, seed: int) -> list[Path]:
    """Write ``count`` (size, size, 4) float32 tensors in [0, 1], one channel at a time."""
    rng = np.random.default_rng(seed)
    (workdir / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = workdir / "images" / f"bench{number}.npy"
        tensor = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, size, 4))
        for channel in range(4):
            for start in range(0, size, 512):
                rows = min(512, size - start)
                tensor[start : start + rows, :, channel] = rng.random((rows, size), np.float32)
        tensor.flush()
        del tensor
        paths.append(path)
    return paths


def candidate_index(paths: list[Path], n: int, size: int, seed: int) -> pd.DataFrame:
    """Random candidates over the tensors; the first tensor is train, the others validation."""
    rng = np.random.default_rng(seed)
    job = rng.integers(len(paths), size=n)
    frame = pd.DataFrame(
        {
            "id": np.arange(n, dtype=float),
            "jid": [paths[j].stem for j in job],
            "x": rng.uniform(-0.5, size - 0.5, n),
            "y": rng.uniform(-0.5, size - 0.5, n),
            "label": (rng.random(n) < 0.2).astype(int),
            "image_filename": [f"images/{paths[j].name}" for j in job],
            "split": np.where(job == 0, "train", "validation"),
        }
    )
    for name in FEATURE_COLUMNS:
        frame[name] = rng.normal(size=n)
    return frame


def mmap_cutouts_per_second(index: pd.DataFrame, workdir: Path) -> float:
    dataset = CutoutDataset(index, workdir)
    started = time.perf_counter()
    for position in range(len(dataset)):
        dataset[position]
    return len(dataset) / (time.perf_counter() - started)


def full_load_cutouts_per_second(index: pd.DataFrame, workdir: Path) -> float:
    started = time.perf_counter()
    for row in index.itertuples():
        tensor = np.load(workdir / row.image_filename)
        extract_cutout(tensor, row.x, row.y)
        del tensor
    return len(index) / (time.perf_counter() - started)


def training_samples_per_second(
    index: pd.DataFrame, workdir: Path, epochs: int, device: str, num_workers: int | None = None
) -> tuple[float, int, int]:
    config = TrainConfig(
        epochs=epochs, batch_size=128, device=device, patience=epochs, num_workers=num_workers
    )
    result = train_model(index, workdir, config)
    return result.samples_per_second, result.n_train, result.num_workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tensors", type=int, default=2)
    parser.add_argument("--size", type=int, default=4090)
    parser.add_argument("--cutouts", type=int, default=2000)
    parser.add_argument("--full-loads", type=int, default=6)
    parser.add_argument("--train-samples", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cuda", action="store_true", help="also train on CUDA if available")
    parser.add_argument(
        "--cuda-workers",
        type=lambda text: [None if value == "auto" else int(value) for value in text.split(",")],
        default=[None],
        help="DataLoader worker counts to train with on CUDA, comma-separated; auto: the default",
    )
    parser.add_argument("--workdir", type=Path, default=REPOSITORY / "benchmarks/_work/cnn")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.tensors < 2:
        parser.error("--tensors must be >= 2 (one train and one validation job)")

    workdir = args.workdir
    if workdir.exists():
        shutil.rmtree(workdir)
    try:
        started = time.perf_counter()
        paths = write_tensors(workdir, args.tensors, args.size, args.seed)
        write_seconds = time.perf_counter() - started
        mmap_index = candidate_index(paths, args.cutouts, args.size, args.seed + 1)
        full_index = candidate_index(paths, args.full_loads, args.size, args.seed + 2)
        mmap_rate = mmap_cutouts_per_second(mmap_index, workdir)
        full_rate = full_load_cutouts_per_second(full_index, workdir)
        train_index = candidate_index(paths, args.train_samples, args.size, args.seed + 3)
        cpu_rate, n_train, _ = training_samples_per_second(train_index, workdir, args.epochs, "cpu")
        cuda_rates = []
        if args.cuda and torch.cuda.is_available():
            for workers in args.cuda_workers:
                rate, _, used = training_samples_per_second(
                    train_index, workdir, args.epochs, "cuda", workers
                )
                cuda_rates.append((rate, f"auto: {used}" if workers is None else str(used)))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    machine = f"{os.cpu_count()} cores {platform.machine()}, torch {torch.__version__}"
    if cuda_rates:
        machine += f", {torch.cuda.get_device_name()}"
    tensor_mb = args.size * args.size * 4 * 4 / 1e6
    print(f"wrote {args.tensors} tensors of {tensor_mb:.0f} MB in {write_seconds:.1f} s")
    print(
        "| date | machine | tensor | mmap cutouts/s | full-load cutouts/s | ratio "
        "| CPU train samples/s (threads) | CUDA train samples/s | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    cuda_text = (
        "; ".join(f"{rate:.0f} ({workers} workers)" for rate, workers in cuda_rates) or "n/a"
    )
    print(
        f"| {date.today().isoformat()} | {machine} | {args.size} x {args.size} x 4 f32 "
        f"| {mmap_rate:.0f} | {full_rate:.2f} | {mmap_rate / full_rate:.0f}x "
        f"| {cpu_rate:.0f} ({torch.get_num_threads()}, {n_train} samples) | {cuda_text} "
        f"| {os.getloadavg()[0]:.1f} |"
    )


if __name__ == "__main__":
    main()
