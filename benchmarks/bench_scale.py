"""Benchmark: the transient graph with thousands of job folders.

Measures, on ``--jobs`` small job folders (default 2,000):

1. ``jids_sensor`` ticks, evaluated with ``dg.build_sensor_context`` against a real SQLite
   ``DagsterInstance`` and a ``DataStore``, tick after tick until every folder is registered
   (each tick's partition requests are applied to the instance, as the daemon does). Two cases:
   folders just copied (modified seconds ago: each needs two observations) and folders settled
   (modified an hour ago). Compared with Dagster's default sensor evaluation budget (60 s,
   ``DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS``).
2. One single-run backfill of ``job_tensors`` over all partitions
   (``astro_assets.materialize.materialize_selection``, one run for the range), against the
   same work done by the science functions in a plain loop (``write_job_tensor``,
   ``read_psfcat``, the candidates CSV and the blocking check's ``tensor_problems``); a
   one-partition run gives the fixed cost of a run. Also the growth of the instance's storage.
3. GraphQL latency of the ``job_tensors`` asset page: ``dagster-webserver`` on a free loopback
   port, the queries the page issues (definition, partition health over every partition,
   latest materialization metadata, the Events tab's latest partitions and their
   materializations, one partition's detail), median and 95th percentile over ``--requests``.

The folders are cheap to create: ONE job is generated (``generate_jobs(..., size=--size)``)
and its five files are hard-linked into ``jid0001`` ... ``jidNNNN`` (copied when hard links are
not possible). Hard links share one inode, so every folder reports the same size and
modification time and every input read comes from the page cache: the figures are the
product's own CPU and database cost per job, not disk throughput.

Usage::

    .venv/bin/python benchmarks/bench_scale.py [--jobs 2000] [--size 64] [--requests 20]
        [--workdir benchmarks/_work/scale] [--record] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "benchmarks" / "README.md"
SECTION = "## Scale"
SENSOR_BUDGET_S = 60.0
ASSET_KEY = {"path": ["job_tensors"]}

_METADATA_FIELDS = """
      metadataEntries {
        __typename
        label
        description
        ... on JsonMetadataEntry { jsonString }
        ... on MarkdownMetadataEntry { mdStr }
        ... on TextMetadataEntry { text }
        ... on PathMetadataEntry { path }
        ... on IntMetadataEntry { intValue intRepr }
        ... on FloatMetadataEntry { floatValue }
        ... on BoolMetadataEntry { boolValue }
      }
"""

# The asset page's queries (dagster-webserver 1.13 ui-core: AssetView.tsx, usePartitionHealthData,
# useLatestEvents, useRecentAssetEvents, AssetPartitionDetail), with the metadata fragment cut
# to the entry types this asset emits.
QUERIES: dict[str, str] = {
    "definition": """
query AssetViewDefinitionQuery($assetKey: AssetKeyInput!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      id
      key { path }
      hasDefinitionOrRecord
      assetMaterializations(limit: 1) { timestamp runId }
      definition {
        id
        opVersion
        groupName
        isExecutable
        partitionDefinition {
          description
          dimensionTypes { type dynamicPartitionsDefinitionName }
        }
        partitionKeysByDimension { name }
        backfillPolicy { description }
        requiredResources { resourceKey }
        repository { id name location { id name } }
      }
    }
  }
}""",
    "partition health": """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses {
          materializedPartitions
          materializingPartitions
          failedPartitions
        }
      }
    }
  }
}""",
    "latest materialization": f"""
query AssetOverviewMetadataEventsQuery($assetKey: AssetKeyInput!) {{
  assetOrError(assetKey: $assetKey) {{
    ... on Asset {{
      id
      assetMaterializations(limit: 1) {{
        timestamp
        runId
        partition
        {_METADATA_FIELDS}
      }}
    }}
  }}
}}""",
    "events tab: latest 100 partitions": """
query LatestAssetPartitionsQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeyConnection(limit: 100, ascending: false) { results }
    }
  }
}""",
    "events tab: their materializations": f"""
query AssetPartitionEventsQuery($assetKey: AssetKeyInput!, $partitions: [String!]!) {{
  assetNodeOrError(assetKey: $assetKey) {{
    ... on AssetNode {{
      id
      latestMaterializationByPartition(partitions: $partitions) {{
        partition
        runId
        timestamp
        stepKey
        {_METADATA_FIELDS}
      }}
    }}
  }}
}}""",
    "one partition's detail": f"""
query AssetPartitionDetailQuery($assetKey: AssetKeyInput!, $partitionKey: String!) {{
  assetOrError(assetKey: $assetKey) {{
    ... on Asset {{
      id
      definition {{
        id
        latestRunForPartition(partition: $partitionKey) {{ id status endTime }}
      }}
      assetEventHistory(
        partitions: [$partitionKey]
        limit: 1000
        eventTypeSelectors: [MATERIALIZATION, OBSERVATION, FAILED_TO_MATERIALIZE]
      ) {{
        results {{
          ... on MaterializationEvent {{
            runId
            timestamp
            partition
            {_METADATA_FIELDS}
          }}
        }}
      }}
    }}
  }}
}}""",
}


@dataclass
class Tick:
    evaluate_s: float
    apply_s: float
    registered: int
    pending: int
    run_key_chars: int


def _machine() -> str:
    cores = os.cpu_count() or 0
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        memory = f", {memory_gib:.0f} GiB"
    except (ValueError, OSError):
        memory = ""
    return f"{cores} cores {platform.machine()}{memory}"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def make_job_folders(workdir: Path, jobs_root: Path, n_jobs: int, size: int) -> list[Path]:
    """Generate one job and hard-link its five files into ``n_jobs`` folders; the five files."""
    from astro_assets.io.fits import JOB_FILES
    from astro_assets.samples import generate_jobs

    (template,) = generate_jobs(workdir / "template", 1, size=size, seed=7)
    sources = [template / name for name in JOB_FILES.values()]
    width = max(4, len(str(n_jobs)))
    for index in range(1, n_jobs + 1):
        folder = jobs_root / f"jid{index:0{width}d}"
        folder.mkdir(parents=True)
        for source in sources:
            try:
                os.link(source, folder / source.name)
            except OSError:
                shutil.copy2(source, folder / source.name)
    return sources


def set_mtime(paths: list[Path], seconds_ago: float) -> None:
    """Set the modification time of ``paths`` (hence of every hard link to them)."""
    stamp = time.time() - seconds_ago
    for path in paths:
        os.utime(path, (stamp, stamp))


def sensor_ticks(instance, data_store, n_jobs: int, max_ticks: int) -> list[Tick]:
    """Evaluate ``jids_sensor`` until ``n_jobs`` partitions are registered."""
    import dagster as dg

    from astro_assets.defs.transients.sensors import jids_sensor

    ticks: list[Tick] = []
    cursor = None
    registered = 0
    while registered < n_jobs and len(ticks) < max_ticks:
        start = time.perf_counter()
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"data_store": data_store}
        )
        result = jids_sensor(context)
        evaluated = time.perf_counter()
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        applied = time.perf_counter()
        cursor = result.cursor
        registered = len(instance.get_dynamic_partitions("jids"))
        ticks.append(
            Tick(
                evaluate_s=evaluated - start,
                apply_s=applied - evaluated,
                registered=registered,
                pending=len(json.loads(cursor)),
                run_key_chars=max((len(r.run_key or "") for r in result.run_requests), default=0),
            )
        )
    if registered < n_jobs:
        raise RuntimeError(f"only {registered} of {n_jobs} jobs registered in {max_ticks} ticks")
    return ticks


def direct_loop(layout, keys: list[str], out_dir: Path) -> float:
    """The science of job_tensors (and its blocking check) in a plain loop; wall seconds."""
    from astro_assets.defs.transients.checks import tensor_problems
    from astro_assets.io.atomic import atomic_path
    from astro_assets.io.fits import IMAGE_ROLES, job_file_paths
    from astro_assets.science.transients.candidates import read_psfcat
    from astro_assets.science.transients.tensors import write_job_tensor

    start = time.perf_counter()
    for jid in keys:
        files = job_file_paths(layout.job_dir(jid))
        tensor_path = out_dir / "images" / f"{jid}.npy"
        result = write_job_tensor(tensor_path, {role: files[role] for role in IMAGE_ROLES})
        candidates = read_psfcat(files["catalog"], jid=jid, image_shape=result.shape[:2])
        with atomic_path(out_dir / "candidates" / f"{jid}.csv") as tmp:
            candidates.to_csv(tmp, index=False)
        if tensor_problems(tensor_path):
            raise RuntimeError(f"{jid}: the tensor fails its check")
    return time.perf_counter() - start


def _resources(data_root: Path) -> dict[str, object]:
    from astro_assets.resources.dust_eye import DustEye
    from astro_assets.resources.gemini import GeminiImageModel
    from astro_assets.resources.storage import DataStore

    return {
        "data_store": DataStore(root=str(data_root)),
        "dust_eye": DustEye(backend="classical", gemini=GeminiImageModel()),
    }


def timed_materialize(instance, data_root: Path, partition: str | None) -> float:
    from astro_assets.definitions import defs
    from astro_assets.materialize import materialize_selection

    start = time.perf_counter()
    outcome = materialize_selection(
        instance,
        selection="job_tensors",
        partition=partition,
        defs=defs,
        resources=_resources(data_root),
        log_level="WARNING",
    )
    elapsed = time.perf_counter() - start
    if not outcome.succeeded or len(outcome.runs) != 1:
        raise RuntimeError("job_tensors did not succeed in one run:\n" + "\n".join(outcome.lines()))
    return elapsed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, query: str, variables: dict, timeout: float) -> tuple[float, int, dict]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
    elapsed = time.perf_counter() - start
    return elapsed, len(payload), json.loads(payload)


class Webserver:
    """``dagster-webserver`` in its own process group, stopped (group and all) on exit."""

    def __init__(self, home: Path, data_root: Path, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        env = {**os.environ, "DAGSTER_HOME": str(home), "ASTRO_ASSETS_DATA": str(data_root)}
        executable = Path(sys.executable).parent / "dagster-webserver"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [str(executable), "-h", "127.0.0.1", "-p", str(self.port), "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_loaded(self, timeout_s: float = 300.0) -> float:
        """Wait until job_tensors resolves through GraphQL; seconds from start."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {self.process.returncode}")
            try:
                _, _, answer = _post(
                    self.url, QUERIES["definition"], {"assetKey": ASSET_KEY}, timeout=30
                )
                asset = answer.get("data", {}).get("assetOrError") or {}
                if asset.get("definition"):
                    return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1.0)
        raise RuntimeError(f"dagster-webserver did not load the code location in {timeout_s} s")

    def __enter__(self) -> Webserver:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def graphql_latency(server: Webserver, keys: list[str], requests: int, budget_s: float) -> list:
    """Median and p95 (ms), response size and count of each asset-page query."""
    _, _, latest = _post(
        server.url, QUERIES["events tab: latest 100 partitions"], {"assetKey": ASSET_KEY}, 600
    )
    newest = latest["data"]["assetNodeOrError"]["partitionKeyConnection"]["results"]
    variables = {
        "events tab: their materializations": {"partitions": list(reversed(newest))},
        "one partition's detail": {"partitionKey": keys[-1]},
    }
    rows = []
    for name, query in QUERIES.items():
        query_variables = {"assetKey": ASSET_KEY, **variables.get(name, {})}
        _, size, answer = _post(server.url, query, query_variables, 600)  # warm-up
        if answer.get("errors"):
            raise RuntimeError(f"{name}: {answer['errors'][0].get('message')}")
        times = []
        started = time.perf_counter()
        while len(times) < requests and time.perf_counter() - started < budget_s:
            elapsed, size, _ = _post(server.url, query, query_variables, 600)
            times.append(elapsed * 1e3)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        rows.append((name, statistics.median(times), p95, size / 1e3, len(times)))
    return rows


def markdown(result: dict) -> str:
    n = result["jobs"]
    lines = [
        f"### {result['date']}, {result['machine']}, {n} jobs of {result['size']} x "
        f"{result['size']} px (load avg {result['load']:.1f})",
        "",
        f"Folders: {n} x 5 hard links to one generated job, made in "
        f"{result['make_folders_s']:.1f} s.",
        "",
        "| sensor case | ticks to register all | evaluation per tick mean / max (s) "
        "| max / 60 s budget | add partitions per tick max (s) | run key max (chars) |",
        "|---|---|---|---|---|---|",
    ]
    for case, ticks in result["ticks"].items():
        evaluations = [t["evaluate_s"] for t in ticks]
        lines.append(
            f"| {case} | {len(ticks)} | {statistics.mean(evaluations):.2f} / "
            f"{max(evaluations):.2f} | {max(evaluations) / SENSOR_BUDGET_S:.1%} "
            f"| {max(t['apply_s'] for t in ticks):.2f} "
            f"| {max(t['run_key_chars'] for t in ticks)} |"
        )
    if "backfill" not in result:
        return (
            "\n".join([*lines, "", "(`--sensor-only`: no backfill or GraphQL in this run.)"]) + "\n"
        )
    backfill = result["backfill"]
    lines += [
        "",
        "| single-run backfill | seconds | partitions/s | per partition (ms) |",
        "|---|---|---|---|",
        f"| science in a plain loop | {backfill['direct_s']:.1f} "
        f"| {n / backfill['direct_s']:.1f} | {1e3 * backfill['direct_s'] / n:.1f} |",
        f"| job_tensors, one run over {n} partitions | {backfill['run_s']:.1f} "
        f"| {n / backfill['run_s']:.1f} | {1e3 * backfill['run_s'] / n:.1f} |",
        f"| Dagster overhead (run minus loop minus fixed) | "
        f"{backfill['run_s'] - backfill['direct_s'] - backfill['fixed_s']:.1f} | - "
        f"| {backfill['overhead_ms']:.1f} |",
        f"| fixed cost of a run (one-partition run minus its loop) | {backfill['fixed_s']:.1f} "
        "| - | - |",
        "",
        f"Instance storage grew by {backfill['storage_mb']:.0f} MB during the backfill "
        f"({1e3 * backfill['storage_mb'] / n:.0f} kB per partition).",
        "",
        "GraphQL (`dagster-webserver`, code location loaded in "
        f"{result['webserver_load_s']:.0f} s):",
        "",
        "| asset page query | median (ms) | p95 (ms) | response (kB) | requests |",
        "|---|---|---|---|---|",
    ]
    for name, median, p95, size_kb, count in result["graphql"]:
        lines.append(f"| {name} | {median:.0f} | {p95:.0f} | {size_kb:.0f} | {count} |")
    return "\n".join(lines) + "\n"


def record(block: str) -> None:
    text = README.read_text()
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        raise RuntimeError(f"{README} has no '{SECTION}' section to record into")
    end = text.find("\n## ", start + len(SECTION) + 2)
    end = len(text) if end < 0 else end + 1
    before = text[:end].rstrip("\n") + "\n\n"
    README.write_text(before + block + ("\n" + text[end:] if end < len(text) else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64, help="job image side, pixels")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per query")
    parser.add_argument(
        "--query-budget", type=float, default=120.0, help="seconds of timed requests per query"
    )
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks/_work/scale")
    parser.add_argument("--record", action="store_true", help=f"append to {SECTION} in README")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--sensor-only", action="store_true", help="measure the sensor ticks only (part 1)"
    )
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)

    from astro_assets.io.paths import DataLayout
    from astro_assets.resources.storage import DataStore

    workdir = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    data_root, home = workdir / "data", workdir / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    layout = DataLayout(data_root)
    data_store = DataStore(root=str(data_root))
    result: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "jobs": args.jobs,
        "size": args.size,
        "load": os.getloadavg()[0],
    }

    start = time.perf_counter()
    sources = make_job_folders(workdir, layout.incoming_jobs, args.jobs, args.size)
    result["make_folders_s"] = time.perf_counter() - start
    print(f"{args.jobs} job folders in {result['make_folders_s']:.1f} s", flush=True)
    max_ticks = 4 * (args.jobs // 500 + 2)

    result["ticks"] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as scratch_home:
        shutil.copyfile(REPO_ROOT / "dagster.yaml", Path(scratch_home) / "dagster.yaml")
        scratch = dg.DagsterInstance.from_config(scratch_home)
        set_mtime(sources, 0)
        ticks = sensor_ticks(scratch, data_store, args.jobs, max_ticks)
        result["ticks"]["just copied"] = [t.__dict__ for t in ticks]
        set_mtime(sources, 3600)
        instance = dg.DagsterInstance.from_config(str(home))
        ticks = sensor_ticks(instance, data_store, args.jobs, max_ticks)
        result["ticks"]["settled"] = [t.__dict__ for t in ticks]
        for case, rows in result["ticks"].items():
            print(f"sensor, {case}:", flush=True)
            for number, tick in enumerate(rows, 1):
                print(
                    f"  tick {number}: evaluate {tick['evaluate_s']:.3f} s, add partitions "
                    f"{tick['apply_s']:.3f} s, registered {tick['registered']}, pending "
                    f"{tick['pending']}",
                    flush=True,
                )

        keys = instance.get_dynamic_partitions("jids")
        if not args.sensor_only:
            fixed_run = timed_materialize(scratch, data_root, keys[0])
        scratch.dispose()
    if args.sensor_only:
        instance.dispose()
        return _finish(args, workdir, result)
    one_loop = direct_loop(layout, keys[:1], workdir / "direct_one")
    direct_s = direct_loop(layout, keys, workdir / "direct")
    print(f"plain loop: {direct_s:.1f} s for {len(keys)} jobs", flush=True)
    storage_before = _folder_bytes(home)
    run_s = timed_materialize(instance, data_root, None)
    storage_mb = (_folder_bytes(home) - storage_before) / 1e6
    materialized = instance.get_materialized_partitions(dg.AssetKey("job_tensors"))
    if len(materialized) != args.jobs:
        raise RuntimeError(f"{len(materialized)} of {args.jobs} partitions materialized")
    fixed_s = max(0.0, fixed_run - one_loop)
    result["backfill"] = {
        "direct_s": direct_s,
        "run_s": run_s,
        "fixed_s": fixed_s,
        "overhead_ms": 1e3 * (run_s - direct_s - fixed_s) / args.jobs,
        "storage_mb": storage_mb,
    }
    print(f"backfill: {run_s:.1f} s, storage +{storage_mb:.0f} MB", flush=True)
    instance.dispose()

    with Webserver(home, data_root, workdir / "webserver.log") as server:
        result["webserver_load_s"] = server.wait_until_loaded()
        result["graphql"] = graphql_latency(server, keys, args.requests, args.query_budget)

    return _finish(args, workdir, result)


def _finish(args: argparse.Namespace, workdir: Path, result: dict) -> int:
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    block = markdown(result)
    print()
    print(block)
    if args.record:
        record(block)
    if not args.keep:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
