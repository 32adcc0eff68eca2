//! Health (in progress).
