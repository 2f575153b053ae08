"""``astro-assets``: headless use of the code location against the persistent instance.

Runs started here are recorded in ``$DAGSTER_HOME`` (default ``./.dagster_home``), so they show
in the UI of ``make dev`` exactly like runs launched there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from astro_assets.io.atomic import atomic_create_text

DAGSTER_HOME_ENV = "DAGSTER_HOME"
DEFAULT_DAGSTER_HOME = ".dagster_home"
PROJECT_INSTANCE_YAML = "dagster.yaml"

INSTANCE_SETTINGS = """\
# Instance settings only. `make` and `astro-assets` copy this file into $DAGSTER_HOME
# (default ./.dagster_home), whose SQLite databases hold runs, event logs and schedules.
# astro_assets/cli.py ships a copy (INSTANCE_SETTINGS) for commands run outside the checkout;
# edit both (a test keeps them identical).
telemetry:
  enabled: false

concurrency:
  runs:
    # Two cores: more parallel runs only compete for them.
    max_concurrent_runs: 2
  pools:
    # Only the "gemini" pool exists (steps calling the Gemini API): one request at a time.
    default_limit: 1
    granularity: op

run_retries:
  enabled: true
  max_retries: 1
"""
"""The project's ``dagster.yaml``, shipped with the package so that a command run outside the
checkout gets it too (a test keeps the two identical)."""


def ensure_dagster_home() -> Path:
    """Use ``$DAGSTER_HOME`` (default ``./.dagster_home``), giving it the project's instance
    settings when it has no ``dagster.yaml``.

    The settings are ``./dagster.yaml`` when the command runs in a checkout (edited there, they
    are what ``make`` copies too), else :data:`INSTANCE_SETTINGS`. A ``dagster.yaml`` already in
    the home is never replaced, and the new one is written atomically.
    """
    home = Path(os.environ.get(DAGSTER_HOME_ENV) or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / PROJECT_INSTANCE_YAML
    if not instance_yaml.exists():
        project_yaml = Path.cwd() / PROJECT_INSTANCE_YAML
        in_checkout = project_yaml.is_file() and project_yaml.resolve() != instance_yaml
        settings = project_yaml.read_text(encoding="utf-8") if in_checkout else INSTANCE_SETTINGS
        atomic_create_text(instance_yaml, settings)
    os.environ[DAGSTER_HOME_ENV] = str(home)
    return home


def _data_layout():
    from astro_assets.io.paths import DataLayout, default_data_root

    return DataLayout(default_data_root())


def cmd_samples(args: argparse.Namespace) -> int:
    from astro_assets.samples import generate_jobs, generate_sample_darks, generate_samples

    layout = _data_layout()
    if not args.no_videos:
        videos = generate_samples(layout.incoming_ser, size=args.size)
        for path in videos:
            print(f"video  {path}")
        for path in generate_sample_darks(layout.incoming_darks, size=args.size):
            print(f"dark   {path}")
    if args.jobs:
        for path in generate_jobs(
            layout.incoming_jobs, args.jobs, size=args.job_size, seed=args.seed
        ):
            print(f"job    {path}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import dagster as dg

    from astro_assets.ingest import register_new_inputs

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    try:
        report = register_new_inputs(instance, _data_layout(), watch_seconds=args.watch_seconds)
    except OSError as error:
        # A file or folder that vanished or became unreadable mid-scan (a stale network mount).
        print(f"astro-assets ingest: error: {error}", file=sys.stderr)
        return 1
    for line in report.lines(errors=False):
        print(line)
    for message in report.errors:
        print(f"astro-assets ingest: error: {message}", file=sys.stderr)
    return 1 if report.errors else 0


def selection_holding_partition(instance, partition: str, defs=None) -> tuple[str, str | None]:
    """The selection ``materialize --partition KEY`` runs without ``--select``: the assets
    whose dynamic partitions have ``partition`` registered; and a line for the user when more
    than one set of partitions has it (a video and a job of the same name), else None.

    Everything would hold assets of every set, and a video's key is no job's: the run of
    ``job_tensors`` for it would be refused although ``ingest`` registered the video. The
    unpartitioned assets downstream (``master_index`` ...) are left out: they cover every
    job, not the one asked for.

    Parameters
    ----------
    instance : dagster.DagsterInstance
        Where the partitions are registered.
    partition : str
        The key given with ``--partition``.
    defs : dagster.Definitions, optional
        The code location's definitions (default: this project's).

    Returns
    -------
    selection : str
        Dagster asset-selection syntax naming those assets (``key:A or key:B ...``).
    note : str or None
        Says which sets hold the key, when more than one does.

    Raises
    ------
    ValueError
        When no set of partitions has the key registered: it names the sets, and says to run
        ``astro-assets ingest`` or to check the key.
    """
    import dagster as dg

    if defs is None:
        from astro_assets.definitions import defs
    graph = defs.resolve_asset_graph()
    by_set: dict[str, list[str]] = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if node.is_materializable and isinstance(
            node.partitions_def, dg.DynamicPartitionsDefinition
        ):
            by_set.setdefault(node.partitions_def.name, []).append(key.to_user_string())
    holding = [name for name in by_set if partition in instance.get_dynamic_partitions(name)]
    if not holding:
        raise ValueError(
            f"partition {partition!r} is registered in none of {', '.join(map(repr, by_set))}: "
            "run `astro-assets ingest` first if it is a new video or job folder, or check the "
            "key (a video's is its file's stem, a job's its folder's name)"
        )
    assets = [asset for name in holding for asset in by_set[name]]
    selection = " or ".join(f"key:{asset}" for asset in assets)
    note = None
    if len(holding) > 1:
        runs = "; ".join(f"{name}: {', '.join(by_set[name])}" for name in holding)
        note = (
            f"partition {partition!r} is registered in {' and '.join(map(repr, holding))}: "
            f"running the assets of both ({runs}); give --select to run only one of them"
        )
    return selection, note


def cmd_materialize(args: argparse.Namespace) -> int:
    import dagster as dg

    from astro_assets.materialize import materialize_selection

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    selection = args.select
    if args.partition is not None and not selection:
        selection, note = selection_holding_partition(instance, args.partition)
        if note:
            print(note)
    outcome = materialize_selection(instance, selection=selection, partition=args.partition)
    for line in outcome.lines():
        print(line)
    return 0 if outcome.succeeded else 1


def cmd_score(args: argparse.Namespace) -> int:
    from astro_assets.science.transients.scoring import score_candidates, write_scores

    scores = score_candidates(args.model, args.dataset, device=args.device)
    write_scores(scores, args.out)
    outside = int(scores["score"].isna().sum())
    if outside:
        print(
            f"scored {len(scores) - outside} of {len(scores)} candidates -> {args.out}; "
            f"{outside} lie outside their image and have an empty score (in_image False)"
        )
    else:
        print(f"scored {len(scores)} candidates -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astro-assets",
        description="Headless runs of the astro_assets code location (data root: "
        "$ASTRO_ASSETS_DATA or ./data; instance: $DAGSTER_HOME or ./.dagster_home).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    samples = sub.add_parser("samples", help="write seeded synthetic inputs with ground truth")
    samples.add_argument("--size", choices=["small", "demo"], default="demo")
    samples.add_argument(
        "--no-videos", action="store_true", help="skip the SER videos and their darks"
    )
    samples.add_argument("--jobs", type=int, default=0, help="number of job folders to write")
    samples.add_argument("--job-size", type=int, default=512, help="job image side, pixels")
    samples.add_argument("--seed", type=int, default=0)
    samples.set_defaults(func=cmd_samples)

    ingest = sub.add_parser("ingest", help="register new inputs as partitions (as the sensors do)")
    ingest.add_argument(
        "--watch-seconds",
        type=float,
        default=1.0,
        help="how long a recently modified input must stay unchanged to count as complete",
    )
    ingest.set_defaults(func=cmd_ingest)

    materialize = sub.add_parser("materialize", help="materialize assets in-process")
    materialize.add_argument(
        "--select",
        default=None,
        help="Dagster asset selection (e.g. 'ser_median', 'group:flatfield', '*final_flatfield'); "
        "default: everything, or with --partition the assets partitioned by the set that has "
        "that key registered (a video's: the flat-field chain; a job's: job_tensors)",
    )
    materialize.add_argument(
        "--partition",
        default=None,
        help="one partition key; default: every registered partition of the selected assets",
    )
    materialize.set_defaults(func=cmd_materialize)

    score = sub.add_parser("score", help="score every candidate of a dataset with a trained model")
    score.add_argument("--model", required=True, help="model folder (data/models/cnn_model)")
    score.add_argument("--dataset", required=True, help="dataset folder with master_index.csv")
    score.add_argument("--out", required=True, help="CSV to write: jid,id,score")
    score.add_argument("--device", default="auto", help="auto, cpu or cuda")
    score.set_defaults(func=cmd_score)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user error prints one line and exits with status 2."""
    import dagster as dg

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, dg.DagsterInvalidSubsetError) as error:
        print(f"astro-assets {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
