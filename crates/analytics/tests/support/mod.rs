//! Helpers shared by the analytics tests.
pub mod hop_score;
