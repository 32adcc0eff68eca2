//! Adapter for postgres (in progress).
