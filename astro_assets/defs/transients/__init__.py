"""The AI-ready transient dataset, one job_tensors partition per job folder."""

import dagster as dg

defs = dg.Definitions()
