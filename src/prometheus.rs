//! Prometheus text exposition (in progress).
