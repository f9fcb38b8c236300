//! Golden tests: expected values are written as bit arithmetic from the ARMv7 ARM, never
//! copied from the code's output. Zero-valued fields stay in the expressions (`(0 << 2)`):
//! they document the field the manual defines there.
#![allow(clippy::identity_op)]

mod formats;
mod maint;
mod ops;
mod regs;
