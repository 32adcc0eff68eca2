//! TCP fault proxy (in progress).
