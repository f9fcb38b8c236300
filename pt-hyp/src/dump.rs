//! Table dumps of a VM's stage 2 and of the hyp tables, in the manner of Linux's `ptdump`
//! (`arch/arm64/mm/ptdump.c`), through pt-core's [`dump`](pt_core::ops::dump) visitor.
//!
//! ```text
//! VMID 3: VTTBR 0x0003000080000000, VTCR 0x80023558
//! ---[ armv8-s2: 40-bit input, start level 1, root 0x80000000 (2 pages) ]---
//! 0x0009000000-0x0009001000     4K L3 -> 0x000009000000 RW- DEV/nGnRE  AF
//! 0x0040000000-0x0040200000     2M L2 -> 0x000048000000 RWX MEM/WB     AF
//! 0x0040200000-0x0040201000     4K L3 -> 0x000048200000 RWX MEM/WB     AF
//! 0x0040201000-0x0040202000     4K L3 -> 0x000048201000 R-X MEM/WB     AF logged
//! 0x0040202000-0x0040203000     4K L3 -> 0x000048202000 RWX MEM/WB     --
//! ---[ 5 leaves in 5 ranges, 2064K mapped ]---
//! ---[ table pages: L1 2 (root), L2 2, L3 2; total 6 ]---
//! ```
//!
//! Columns: IPA (or hyp VA) range, size, level of its leaves, first output address,
//! permissions, memory type, access flag (`AF`, `--` while clear) and `logged` for a leaf that
//! dirty logging write-protected. Adjacent leaves with the same level and attributes and
//! contiguous output addresses share a line.

use crate::arch::Arch;
use crate::hyp::HypTables;
use crate::stage2::Stage2;
use core::fmt;
use pt_core::ops::{self, DumpStats};
use pt_core::{GuestMemory, PageAllocator};

impl<A: Arch, P: PageAllocator + GuestMemory> Stage2<A, P> {
    /// Writes the VM's stage-2 tree to `out`: a line with VMID, VTTBR and VTCR, then every
    /// range of coalesced leaves and the table pages per level (see the [module](crate::dump)
    /// documentation for the format). Returns what the dump counted. Read only: no TLB or
    /// cache duty.
    pub fn dump(&self, out: &mut impl fmt::Write) -> Result<DumpStats, fmt::Error> {
        writeln!(
            out,
            "VMID {}: VTTBR {:#018x}, VTCR {:#x}",
            self.vmid(),
            self.vttbr(),
            self.vtcr()
        )?;
        ops::dump(&self.walker(), out)
    }
}

impl<A: Arch, P: PageAllocator> HypTables<A, P> {
    /// Writes the hyp-mode tree to `out`: every range of coalesced leaves and the table pages
    /// per level (see the [module](crate::dump) documentation for the format). Returns what
    /// the dump counted. Read only: no TLB or cache duty.
    pub fn dump(&self, out: &mut impl fmt::Write) -> Result<DumpStats, fmt::Error> {
        ops::dump(&self.walker(), out)
    }
}
