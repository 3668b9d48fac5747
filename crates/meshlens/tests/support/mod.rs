//! Shared code of the integration tests.

pub mod ui_fixture;
