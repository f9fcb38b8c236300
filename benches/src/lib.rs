//! # pt-bench
//!
//! Benchmarks of pt-arm's stage-2 tables (ARMv8 and ARMv7 formats) side by side with the Rust
//! peers (`aarch64-paging`, `page-table-generic`, `page_table_multiarch`) and with the hardware floor (a plain loop that
//! stores the same descriptors into pre-zeroed memory), in one run on one host. See
//! `BENCHMARKS.md` at the repository root.
//!
//! - [`pool`]: the non-tracing page pool every subject allocates tables from;
//! - [`subjects`]: the implementations behind one trait;
//! - [`work`]: the operations (untimed setup, timed run) shared by the criterion benchmark
//!   (`cargo bench -p pt-bench`) and the callgrind binary (`benches/callgrind.sh`);
//! - [`report`]: the tables and the SVG plot.

pub mod pool;
pub mod report;
pub mod subjects;
pub mod work;

/// Runs `f` once for every subject (criterion ids and callgrind use the names).
#[macro_export]
macro_rules! for_each_subject {
    ($m:ident $(, $arg:expr)*) => {{
        $m::<$crate::subjects::OursV8>($($arg),*);
        $m::<$crate::subjects::OursV7>($($arg),*);
        $m::<$crate::subjects::AArch64Paging>($($arg),*);
        $m::<$crate::subjects::PageTableGeneric>($($arg),*);
        $m::<$crate::subjects::PageTableMultiarch>($($arg),*);
    }};
}

/// Subject names in table order, then the floor.
pub const SUBJECTS: [&str; 5] = [
    "armv8",
    "armv7",
    "aarch64-paging",
    "page-table-generic",
    "page_table_multiarch",
];
/// Name of the store-loop floor.
pub const FLOOR: &str = "floor";
