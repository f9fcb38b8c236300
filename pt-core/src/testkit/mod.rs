//! Host test kit (feature `testkit`, needs `std`): an arena of fake physical pages, the
//! per-thread recorder of every table write, TLB, cache and barrier operation, a
//! break-before-make checker fed by that recorder, a simulated TLB ([`tlbsim`]) that catches
//! missing invalidations, and a deliberately odd fake [`Format`].
//!
//! Creating an [`Arena`] starts a fresh recording on the current thread; dropping it panics if
//! the checker saw a violation, so every test that uses an arena is checked.
//!
//! [`Format`]: crate::Format

mod arena;
pub mod bbm;
pub mod fake;
pub mod log;
pub mod tlbsim;

pub use arena::Arena;
