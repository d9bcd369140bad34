//! Skewless end-to-end tests live in `all/`.
