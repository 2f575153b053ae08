"""The real Dagster UI (``dagster dev``) driven by headless Chromium."""
