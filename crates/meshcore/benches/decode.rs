//! Placeholder; the criterion benchmark lands next.
fn main() {}
