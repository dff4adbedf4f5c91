//! Standalone settings (being written).
