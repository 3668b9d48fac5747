//! Shared code of the integration tests.

pub mod http;
pub mod ui_fixture;
