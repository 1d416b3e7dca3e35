//! Benchmarks of Paid (see `benches/`).
