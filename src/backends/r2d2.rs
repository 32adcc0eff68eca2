//! Adapter for r2d2 (in progress).
