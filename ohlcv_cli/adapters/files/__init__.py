"""What leaves the process as files or frames: `frames` (pandas and polars), `export` (Parquet,
CSV, JSON lines, Feather), `charts` (matplotlib PNG, plotly HTML)."""
