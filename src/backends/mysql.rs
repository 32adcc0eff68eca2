//! Adapter for mysql (in progress).
