//! `multiverse top` (placeholder while the dashboard is written).
