//! Analytics over stored traffic, as pure functions of their inputs (the reader loads the rows,
//! these functions compute). The first and most important: [`capability`], which infers which
//! nodes handle multi-byte path hashes (normative spec: `multibyte-capability.md` §7); and
//! [`clock`], robust clock skew of observers and nodes.

pub mod bridges;
pub mod capability;
pub mod clock;
pub mod geo;
pub mod hops;
