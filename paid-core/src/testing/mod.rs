//! Conformance suites for port implementations.
