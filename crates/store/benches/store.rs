//! Placeholder until the SQLite benches land.

fn main() {}
