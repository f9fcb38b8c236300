//! Shared helpers of the stage-2 test files (issue 5): every test is written once, generic over
//! the architecture and the IPA size, and instantiated by [`stage2_tests!`] for
//! (ARMv7, 32), (ARMv7, 40), (ARMv8, 32) and (ARMv8, 40).
//!
//! Every test allocates from a [`Arena`], whose drop runs the break-before-make checker.
#![allow(dead_code, unused_imports)]

pub use pt_core::testkit::{log, Arena, GUEST_VA_OFFSET};
pub use pt_core::trace::Record;
pub use pt_core::{
    Barrier, CacheOp, Format, GeometryError, Maintenance, RangeError, TlbOp, BLOCK_1G, BLOCK_2M,
    PAGE_SIZE, TLB_BATCH_THRESHOLD,
};
pub use pt_hyp::{
    Arch, Armv7, Armv8, BlockSize, Error, Ipa, MemType, PageCache, Perms, PhysAddr, RegisterError,
    S2Translation, SlotDesc, SlotFlags, SlotId, Stage2, Stage2Attrs, VirtAddr, MAX_SLOTS,
};

/// Instantiates each generic test `fn name<A: Arch>(ipa_bits: u8)` for the four
/// configurations, as `name::armv7_ipa32` etc.
#[allow(unused_macros)]
macro_rules! stage2_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn armv7_ipa32() {
                    super::$name::<pt_hyp::Armv7>(32)
                }
                #[test]
                fn armv7_ipa40() {
                    super::$name::<pt_hyp::Armv7>(40)
                }
                #[test]
                fn armv8_ipa32() {
                    super::$name::<pt_hyp::Armv8>(32)
                }
                #[test]
                fn armv8_ipa40() {
                    super::$name::<pt_hyp::Armv8>(40)
                }
            }
        )*
    };
}

/// Instantiates each generic test `fn name<A: Arch>()` (no IPA size involved) for both
/// architectures.
#[allow(unused_macros)]
macro_rules! arch_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn armv7() {
                    super::$name::<pt_hyp::Armv7>()
                }
                #[test]
                fn armv8() {
                    super::$name::<pt_hyp::Armv8>()
                }
            }
        )*
    };
}

/// Host physical address of guest RAM at IPA 0 (so RAM at IPA `x` is at `PA_BASE + x`):
/// 1 GiB aligned, below 2^40, far from the arena's table pages.
pub const PA_BASE: u64 = 0x10_0000_0000;
/// A 1 GiB-aligned IPA that every configuration (32-bit IPA included) can map a 1 GiB block at.
pub const RAM: u64 = 0x4000_0000;
/// Physical-address size of both CPUs.
pub const PA_BITS: u8 = 40;

/// The host PA that the tests map IPA `ipa` to.
pub fn pa(ipa: u64) -> PhysAddr {
    PhysAddr(PA_BASE + ipa)
}

/// A VM with VMID 1.
pub fn new_vm<A: Arch>(arena: &Arena, ipa_bits: u8) -> Stage2<A, &Arena> {
    Stage2::new(arena, ipa_bits, 1).expect("create VM")
}

/// Root pages the architecture needs for `ipa_bits` with the shortest walk (issue 17): two
/// concatenated level-1 tables for a 40-bit IPA (1024 entries of 1 GiB, T0SZ = -8 / 24,
/// SL0 = 1), four concatenated level-2 tables for 32 bits (2048 entries of 2 MiB, SL0 = 0).
pub fn root_pages(ipa_bits: u8) -> usize {
    match ipa_bits {
        32 => 4,
        40 => 2,
        b => panic!("no expectation for {b}-bit IPA"),
    }
}

/// Start level for `ipa_bits` (worked out from SL0 and T0SZ, see [`root_pages`]): level 2
/// for 32 bits, level 1 for 40 bits.
pub fn start_level(ipa_bits: u8) -> u8 {
    match ipa_bits {
        32 => 2,
        40 => 1,
        b => panic!("no expectation for {b}-bit IPA"),
    }
}

/// Level of the largest block a VM of `ipa_bits` holds: 1 (1 GiB) when the walk starts at
/// level 1, else 2 (2 MiB; a 32-bit VM has no level-1 table, so no 1 GiB blocks).
pub fn top_block_level(ipa_bits: u8) -> u8 {
    start_level(ipa_bits).max(1)
}

/// Level-2 table pages a tree with a level-2 leaf or table below GiB `gib` needs: one per
/// GiB when the walk starts at level 1, none when level 2 is the root.
pub fn l2_tables(ipa_bits: u8, gibs: usize) -> usize {
    if start_level(ipa_bits) == 1 {
        gibs
    } else {
        0
    }
}

/// True when the architecture can invalidate stage 2 by IPA (ARMv8).
pub fn by_ipa<A: Arch>() -> bool {
    <A::Maint as Maintenance>::S2_BY_IPA
}

/// The TLB operations one batch that changed `leaves` ((IPA, level) each) must issue.
pub fn batch<A: Arch>(vttbr: u64, leaves: &[(u64, u8)]) -> Vec<TlbOp> {
    if !by_ipa::<A>() || leaves.len() > TLB_BATCH_THRESHOLD {
        return vec![TlbOp::S2Vmid { vttbr }];
    }
    let mut v: Vec<TlbOp> = leaves
        .iter()
        .map(|&(ipa, level)| TlbOp::S2Ipa {
            vttbr,
            ipa: Ipa(ipa),
            level,
        })
        .collect();
    v.push(TlbOp::S2CombinedForVmid { vttbr });
    v
}

/// `n` consecutive pages from `ipa`, as (IPA, level 3).
pub fn pages(ipa: u64, n: u64) -> Vec<(u64, u8)> {
    (0..n).map(|i| (ipa + i * PAGE_SIZE, 3)).collect()
}

/// Every leaf in `[lo, hi)`, as (first IPA, level), found through `translate`.
pub fn leaves<A: Arch>(vm: &Stage2<A, &Arena>, lo: u64, hi: u64) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    let mut ipa = lo;
    while ipa < hi {
        match vm.translate(Ipa(ipa)) {
            Some(t) => {
                out.push((t.leaf_ipa.0, t.level));
                ipa = t.leaf_ipa.0 + t.size;
            }
            None => ipa += PAGE_SIZE,
        }
    }
    out
}

/// The fewest table pages a tree holding `leaves` can have: the root, one level-2 table per
/// GiB holding a 2 MiB block or a page (only when the walk starts at level 1), one level-3
/// table per 2 MiB holding a page.
pub fn min_pages(ipa_bits: u8, leaves: &[(u64, u8)]) -> usize {
    use std::collections::BTreeSet;
    let l2: BTreeSet<u64> = leaves
        .iter()
        .filter(|l| l.1 >= 2)
        .map(|l| l.0 / BLOCK_1G)
        .collect();
    let l3: BTreeSet<u64> = leaves
        .iter()
        .filter(|l| l.1 == 3)
        .map(|l| l.0 / BLOCK_2M)
        .collect();
    root_pages(ipa_bits) + l2_tables(ipa_bits, l2.len()) + l3.len()
}

/// The translation of every page in `[lo, hi)`.
pub fn snapshot<A: Arch>(vm: &Stage2<A, &Arena>, lo: u64, hi: u64) -> Vec<Option<S2Translation>> {
    (lo..hi)
        .step_by(PAGE_SIZE as usize)
        .map(|ipa| vm.translate(Ipa(ipa)))
        .collect()
}

/// The TLB and barrier records since the last `log::clear()`, in order.
pub fn maintenance() -> Vec<Record> {
    log::records()
        .into_iter()
        .filter(|r| matches!(r, Record::Tlb(_) | Record::Barrier(_)))
        .collect()
}

/// RAM attributes with `perms`.
pub fn ram(perms: Perms) -> Stage2Attrs {
    Stage2Attrs::ram(perms)
}

/// RAM attributes after dirty logging took write permission away.
pub fn logged(perms: Perms) -> Stage2Attrs {
    Stage2Attrs {
        perms: perms.without(Perms::W),
        logged: true,
        ..Stage2Attrs::ram(perms)
    }
}

/// A slot of `size` bytes at `ipa`, backed by `pa(ipa)`.
pub fn slot(ipa: u64, size: u64, log_dirty: bool) -> SlotDesc {
    SlotDesc {
        ipa: Ipa(ipa),
        size,
        host: pa(ipa),
        flags: SlotFlags {
            readonly: false,
            log_dirty,
            ..SlotFlags::default()
        },
    }
}

/// Asserts that `ipa` maps `pa(ipa)` with `attrs` by a leaf of `level`.
#[track_caller]
pub fn assert_maps<A: Arch>(vm: &Stage2<A, &Arena>, ipa: u64, attrs: Stage2Attrs, level: u8) {
    let size = pt_core::entry_size(level);
    let t = vm
        .translate(Ipa(ipa))
        .unwrap_or_else(|| panic!("{ipa:#x} not mapped"));
    assert_eq!(
        t,
        S2Translation {
            pa: pa(ipa),
            attrs,
            level,
            leaf_ipa: Ipa(ipa & !(size - 1)),
            size,
            desc: t.desc,
        },
        "translation of {ipa:#x}"
    );
}
