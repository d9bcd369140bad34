//! `skewless run-transform` over real Parquet files.
