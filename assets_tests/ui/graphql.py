"""Small helpers to ask a running Dagster webserver questions over its GraphQL API (stdlib only)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
MARKDOWN_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


class GraphQLError(RuntimeError):
    """The server answered a query with errors, or an ``...OrError`` field held an error."""


@dataclass(frozen=True)
class AssetNode:
    """What the asset graph says about one asset."""

    key: str
    group: str
    dependencies: frozenset[str]
    partitions: str | None


@dataclass(frozen=True)
class CheckExecution:
    """One execution of an asset check."""

    run_id: str
    status: str
    partition: str | None
    passed: bool | None


class DagsterGraphQL:
    """A client for ``<base_url>/graphql`` that never goes through an HTTP proxy."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.url = base_url.rstrip("/") + "/graphql"
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a query and return its ``data``; raise `GraphQLError` when it reports errors."""
        body = json.dumps({"query": document, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with self._opener.open(request, timeout=self.timeout_s) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise GraphQLError(f"{self.url}: {payload['errors']}")
        return payload["data"]

    def location_loaded(self, location: str) -> bool:
        """True when the server answers and has loaded ``location`` without error."""
        try:
            data = self.query(
                """
                {
                  workspaceOrError {
                    __typename
                    ... on Workspace {
                      locationEntries {
                        name
                        loadStatus
                        locationOrLoadError { __typename }
                      }
                    }
                  }
                }
                """
            )
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return False
        entries = data["workspaceOrError"].get("locationEntries", [])
        for entry in entries:
            if entry["name"] != location or entry["loadStatus"] != "LOADED":
                continue
            kind = entry["locationOrLoadError"]["__typename"]
            if kind != "RepositoryLocation":
                raise GraphQLError(f"code location {location!r} failed to load ({kind})")
            return True
        return False

    def asset_nodes(self) -> dict[str, AssetNode]:
        """Every asset of the workspace by its (single-part) key."""
        data = self.query(
            """
            {
              assetNodes {
                assetKey { path }
                groupName
                dependencyKeys { path }
                partitionDefinition { name }
              }
            }
            """
        )
        nodes = {}
        for node in data["assetNodes"]:
            key = "/".join(node["assetKey"]["path"])
            partitions = node["partitionDefinition"]
            nodes[key] = AssetNode(
                key=key,
                group=node["groupName"],
                dependencies=frozenset("/".join(d["path"]) for d in node["dependencyKeys"]),
                partitions=partitions["name"] if partitions else None,
            )
        return nodes

    def asset_check_names(self, asset: str) -> dict[str, bool]:
        """The checks defined on ``asset``: name -> blocking."""
        data = self.query(
            """
            query($path: [String!]!) {
              assetNodeOrError(assetKey: {path: $path}) {
                __typename
                ... on AssetNode {
                  assetChecksOrError {
                    __typename
                    ... on AssetChecks { checks { name blocking } }
                  }
                }
              }
            }
            """,
            {"path": asset.split("/")},
        )
        node = _unwrap(data["assetNodeOrError"], "AssetNode")
        checks = _unwrap(node["assetChecksOrError"], "AssetChecks")["checks"]
        return {check["name"]: check["blocking"] for check in checks}

    def run_ids(self) -> set[str]:
        """The ids of the most recent runs of the instance (up to 1000)."""
        data = self.query(
            "{ runsOrError(limit: 1000) { __typename ... on Runs { results { runId } } } }"
        )
        return {run["runId"] for run in _unwrap(data["runsOrError"], "Runs")["results"]}

    def run(self, run_id: str) -> dict[str, Any]:
        """Status, tags, selected assets and checks of one run."""
        data = self.query(
            """
            query($runId: ID!) {
              runOrError(runId: $runId) {
                __typename
                ... on Run {
                  runId
                  status
                  tags { key value }
                  assetSelection { path }
                  assetCheckSelection { name assetKey { path } }
                  runConfigYaml
                }
              }
            }
            """,
            {"runId": run_id},
        )
        run = _unwrap(data["runOrError"], "Run")
        run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
        run["assetSelection"] = {"/".join(key["path"]) for key in run["assetSelection"] or []}
        return run

    def wait_for_run(self, run_id: str, timeout_s: float, poll_s: float = 0.5) -> str:
        """Poll until the run reaches a terminal status and return it."""
        deadline = time.monotonic() + timeout_s
        status = "UNKNOWN"
        while time.monotonic() < deadline:
            status = self.run(run_id)["status"]
            if status in TERMINAL_RUN_STATUSES:
                return status
            time.sleep(poll_s)
        raise TimeoutError(f"run {run_id} still {status} after {timeout_s:.0f} s")

    def check_executions(self, asset: str, check: str, limit: int = 10) -> list[CheckExecution]:
        """The latest executions of one check of ``asset``, newest first."""
        data = self.query(
            """
            query($path: [String!]!, $check: String!, $limit: Int!) {
              assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: $limit) {
                runId
                status
                partition
                evaluation { success }
              }
            }
            """,
            {"path": asset.split("/"), "check": check, "limit": limit},
        )
        return [
            CheckExecution(
                run_id=execution["runId"],
                status=execution["status"],
                partition=execution["partition"],
                passed=execution["evaluation"]["success"] if execution["evaluation"] else None,
            )
            for execution in data["assetCheckExecutions"]
        ]

    def latest_materialization(self, asset: str, partition: str) -> dict[str, Any]:
        """The newest materialization of one partition: ``run_id`` and ``metadata`` by label.

        Markdown entries are returned as their text; other entries as their GraphQL type name.
        """
        data = self.query(
            """
            query($path: [String!]!, $partition: String!) {
              assetOrError(assetKey: {path: $path}) {
                __typename
                ... on Asset {
                  assetMaterializations(partitions: [$partition], limit: 1) {
                    runId
                    partition
                    metadataEntries {
                      label
                      __typename
                      ... on MarkdownMetadataEntry { mdStr }
                    }
                  }
                }
              }
            }
            """,
            {"path": asset.split("/"), "partition": partition},
        )
        materializations = _unwrap(data["assetOrError"], "Asset")["assetMaterializations"]
        if not materializations:
            raise GraphQLError(f"{asset} has no materialization of partition {partition!r}")
        latest = materializations[0]
        metadata = {
            entry["label"]: entry.get("mdStr", entry["__typename"])
            for entry in latest["metadataEntries"]
        }
        return {"run_id": latest["runId"], "partition": latest["partition"], "metadata": metadata}


def markdown_images(markdown: str) -> list[tuple[str, str]]:
    """The ``(alt, src)`` of every image in a markdown string."""
    return [(match["alt"], match["src"]) for match in MARKDOWN_IMAGE.finditer(markdown)]


def _unwrap(value: dict[str, Any], expected: str) -> dict[str, Any]:
    if value["__typename"] != expected:
        raise GraphQLError(f"expected {expected}, the server answered {value}")
    return value
