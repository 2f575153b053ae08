"""One partition per SER video under ``data/incoming/ser``; the key is the sanitized file stem."""

import dagster as dg

ser_files_partitions = dg.DynamicPartitionsDefinition(name="ser_files")
