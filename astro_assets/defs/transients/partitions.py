"""One job_tensors partition per job folder under ``data/incoming/jobs``; the key is its name."""

import dagster as dg

jids_partitions = dg.DynamicPartitionsDefinition(name="jids")
