//! The workloads: what each benchmark sets up (untimed) and runs (timed), shared by the
//! criterion benchmark and the callgrind binary.

use crate::pool::Pool;
use crate::subjects::{Subject, BLOCK, GIB, OA, PAGE, S2AP_W, S2_RAM_ATTRS};
use std::hint::black_box;

/// First IPA of the page mappings (1 GiB aligned).
pub const IA_PAGES: u64 = GIB;
/// First IPA of the block mappings (64 GiB).
pub const IA_BLOCKS: u64 = 64 * GIB;
/// Output address of the block mappings: 2 MiB aligned but not 1 GiB aligned, so that every
/// subject writes 2 MiB blocks (aarch64-paging has no "2 MiB at most" constraint and would
/// otherwise write 1 GiB blocks).
pub const OA_BLOCKS: u64 = OA + BLOCK;

/// The sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Bytes mapped as 4 KiB pages (map, unmap, write-protect, translate, teardown).
    pub pages: u64,
    /// Bytes mapped as 2 MiB blocks.
    pub blocks: u64,
    /// Blocks split per timed run.
    pub splits: u64,
    /// Faults per timed run.
    pub faults: u64,
    /// Translations per timed run.
    pub translates: u64,
}

impl Sizes {
    /// The full run: 1 GiB of pages, 64 GiB of blocks.
    pub const FULL: Sizes = Sizes {
        pages: GIB,
        blocks: 64 * GIB,
        splits: 64,
        faults: 4096,
        translates: 4096,
    };
    /// The quick run: 64 MiB of pages, 4 GiB of blocks.
    pub const QUICK: Sizes = Sizes {
        pages: 64 << 20,
        blocks: 4 * GIB,
        splits: 16,
        faults: 1024,
        translates: 1024,
    };
}

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Map `pages` bytes as 4 KiB pages into an empty tree.
    MapPages,
    /// Map `blocks` bytes as 2 MiB blocks into an empty tree.
    MapBlocks,
    /// Unmap the 4 KiB pages of `pages` bytes (all tables freed).
    UnmapPages,
    /// Unmap the 2 MiB blocks of `blocks` bytes.
    UnmapBlocks,
    /// Write-protect `pages` bytes of 4 KiB pages.
    WriteProtect,
    /// Split `splits` 2 MiB blocks into pages, one call each.
    Split,
    /// Translate `translates` random mapped addresses.
    Translate,
    /// `faults` guest write faults, each mapping one page from a filled top-up cache.
    Fault,
    /// Drop a VM with `pages` bytes mapped as pages.
    Teardown,
    /// [`UnmapPages`](Op::UnmapPages) through pt-hyp (`Stage2::unmap_range`), which also
    /// hands every removed RAM leaf to the data-cache clean (KVM's `kvm_flush_dcache_*`).
    UnmapPagesClean,
    /// [`UnmapBlocks`](Op::UnmapBlocks) through pt-hyp, with the data-cache clean.
    UnmapBlocksClean,
    /// [`Teardown`](Op::Teardown) through pt-hyp (`Stage2` dropped), with the data-cache clean.
    TeardownClean,
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 12] = [
        Op::MapPages,
        Op::MapBlocks,
        Op::UnmapPages,
        Op::UnmapBlocks,
        Op::WriteProtect,
        Op::Split,
        Op::Translate,
        Op::Fault,
        Op::Teardown,
        Op::UnmapPagesClean,
        Op::UnmapBlocksClean,
        Op::TeardownClean,
    ];

    /// Short id.
    pub const fn id(self) -> &'static str {
        match self {
            Op::MapPages => "map_4k",
            Op::MapBlocks => "map_2m",
            Op::UnmapPages => "unmap_4k",
            Op::UnmapBlocks => "unmap_2m",
            Op::WriteProtect => "wrprotect_4k",
            Op::Split => "split_2m",
            Op::Translate => "translate",
            Op::Fault => "fault",
            Op::Teardown => "teardown",
            Op::UnmapPagesClean => "unmap_4k_clean",
            Op::UnmapBlocksClean => "unmap_2m_clean",
            Op::TeardownClean => "teardown_clean",
        }
    }

    /// Operations only pt-hyp has: the fault path, and unmap and teardown with the data-cache
    /// clean of what was mapped (the peers do no cache maintenance).
    pub const fn hyp_only(self) -> bool {
        matches!(
            self,
            Op::Fault | Op::UnmapPagesClean | Op::UnmapBlocksClean | Op::TeardownClean
        )
    }

    /// Parses [`Op::id`].
    pub fn from_id(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.id() == s)
    }

    /// What one unit is.
    pub const fn unit(self) -> &'static str {
        match self {
            Op::MapPages
            | Op::UnmapPages
            | Op::WriteProtect
            | Op::Teardown
            | Op::Split
            | Op::UnmapPagesClean
            | Op::TeardownClean => "page",
            Op::MapBlocks | Op::UnmapBlocks | Op::UnmapBlocksClean => "block",
            Op::Translate => "lookup",
            Op::Fault => "fault",
        }
    }

    /// Units per timed run.
    pub const fn units(self, s: &Sizes) -> u64 {
        match self {
            Op::MapPages
            | Op::UnmapPages
            | Op::WriteProtect
            | Op::Teardown
            | Op::UnmapPagesClean
            | Op::TeardownClean => s.pages / PAGE,
            Op::MapBlocks | Op::UnmapBlocks | Op::UnmapBlocksClean => s.blocks / BLOCK,
            Op::Split => s.splits * 512,
            Op::Translate => s.translates,
            Op::Fault => s.faults,
        }
    }
}

/// A tiny xorshift generator (deterministic addresses for every subject).
pub fn random_pages(n: u64, range: u64) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            IA_PAGES + (x % (range / PAGE)) * PAGE + (x >> 52)
        })
        .collect()
}

/// A prepared run: the subject in its start state plus what the operation needs.
pub struct Prepared<S> {
    /// The subject.
    pub s: S,
    addrs: Vec<u64>,
}

/// Untimed setup of `op` on a fresh subject.
pub fn prepare<S: Subject>(pool: &'static Pool, op: Op, z: &Sizes) -> Prepared<S> {
    pool.scrub();
    let mut s = S::new(pool);
    let mut addrs = Vec::new();
    match op {
        Op::MapPages | Op::MapBlocks => {}
        Op::UnmapPages | Op::WriteProtect | Op::Teardown | Op::UnmapPagesClean => {
            s.map_pages(IA_PAGES, OA, z.pages)
        }
        Op::TeardownClean => {
            s.map_pages(IA_PAGES, OA, z.pages);
            s.clean_teardown();
        }
        Op::UnmapBlocks | Op::UnmapBlocksClean => s.map_blocks(IA_BLOCKS, OA_BLOCKS, z.blocks),
        Op::Split => s.map_blocks(IA_BLOCKS, OA_BLOCKS, z.splits * BLOCK),
        Op::Translate => {
            s.map_pages(IA_PAGES, OA, z.pages);
            addrs = random_pages(z.translates, z.pages);
        }
        Op::Fault => s.add_slot(IA_PAGES, OA + PAGE, z.pages),
    }
    pool.scrub();
    Prepared { s, addrs }
}

/// The timed part of `op`. Returns what must be dropped untimed (`None` for teardown, whose
/// drop is the operation).
#[inline(never)]
pub fn run<S: Subject>(p: Prepared<S>, op: Op, z: &Sizes) -> Option<Prepared<S>> {
    let mut p = p;
    match op {
        Op::MapPages => p.s.map_pages(IA_PAGES, OA, z.pages),
        Op::MapBlocks => p.s.map_blocks(IA_BLOCKS, OA_BLOCKS, z.blocks),
        Op::UnmapPages => p.s.unmap(IA_PAGES, z.pages),
        Op::UnmapBlocks => p.s.unmap(IA_BLOCKS, z.blocks),
        Op::UnmapPagesClean => p.s.unmap_clean(IA_PAGES, z.pages),
        Op::UnmapBlocksClean => p.s.unmap_clean(IA_BLOCKS, z.blocks),
        Op::WriteProtect => p.s.write_protect(IA_PAGES, z.pages),
        Op::Split => {
            for i in 0..z.splits {
                p.s.split(IA_BLOCKS + i * BLOCK);
            }
        }
        Op::Translate => {
            let mut sum = 0u64;
            for &a in &p.addrs {
                sum = sum.wrapping_add(p.s.translate(black_box(a)));
            }
            black_box(sum);
        }
        Op::Fault => {
            for i in 0..z.faults {
                p.s.fault(IA_PAGES + i * PAGE);
            }
        }
        Op::Teardown | Op::TeardownClean => {
            drop(p);
            return None;
        }
    }
    Some(p)
}

/// The floor of `op`: the descriptor stores alone, into pre-zeroed memory (`None` when the
/// operation is not a run of stores).
pub fn floor_units(op: Op, z: &Sizes) -> Option<u64> {
    match op {
        Op::MapPages | Op::MapBlocks | Op::UnmapPages | Op::UnmapBlocks | Op::WriteProtect => {
            Some(op.units(z))
        }
        Op::Split => Some(op.units(z)),
        _ => None,
    }
}

/// The timed part of the floor of `op` over `buf` (which holds the units).
#[inline(never)]
pub fn run_floor(buf: &mut [u64], op: Op) {
    let leaf = S2_RAM_ATTRS | 0b11;
    match op {
        Op::MapPages | Op::Split => crate::subjects::floor_fill(buf, OA | leaf, PAGE),
        Op::MapBlocks => crate::subjects::floor_fill(buf, OA_BLOCKS | S2_RAM_ATTRS | 1, BLOCK),
        Op::UnmapPages | Op::UnmapBlocks => crate::subjects::floor_fill(buf, 0, 0),
        Op::WriteProtect => crate::subjects::floor_clear_bits(buf, S2AP_W),
        _ => {}
    }
    black_box(buf);
}

/// Untimed setup of the floor: the buffer as the operation finds its tables.
pub fn prepare_floor(buf: &mut [u64], op: Op) {
    match op {
        Op::UnmapPages | Op::WriteProtect => {
            crate::subjects::floor_fill(buf, OA | S2_RAM_ATTRS | 3, PAGE)
        }
        Op::UnmapBlocks => crate::subjects::floor_fill(buf, OA_BLOCKS | S2_RAM_ATTRS | 1, BLOCK),
        _ => buf.fill(0),
    }
}

/// Table pages (root excluded) a subject holds after mapping `size` bytes as pages at
/// [`IA_PAGES`], and after mapping `blocks` bytes as 2 MiB blocks at [`IA_BLOCKS`]; also checks
/// that random addresses translate right.
pub fn tables_used<S: Subject>(pool: &'static Pool, z: &Sizes) -> (usize, usize) {
    pool.scrub();
    let empty = pool.live();
    let mut s = S::new(pool);
    let root = pool.live() - empty;
    s.map_pages(IA_PAGES, OA, z.pages);
    let pages = pool.live() - empty - root;
    for a in random_pages(64, z.pages) {
        assert_eq!(
            s.translate(a),
            OA + (a - IA_PAGES),
            "{} translate {a:#x}",
            S::NAME
        );
    }
    drop(s);
    let mut s = S::new(pool);
    s.map_blocks(IA_BLOCKS, OA_BLOCKS, z.blocks);
    let blocks = pool.live() - empty - root;
    let a = IA_BLOCKS + z.blocks / 2 + 0x1234;
    assert_eq!(
        s.translate(a),
        OA_BLOCKS + (a - IA_BLOCKS),
        "{} translate {a:#x}",
        S::NAME
    );
    drop(s);
    assert_eq!(pool.live(), empty, "{} leaked tables", S::NAME);
    (pages, blocks)
}

/// The fewest tables (below the root, for a root that covers at least 512 GiB at level 1)
/// that can map `size` bytes at a 1 GiB-aligned address as pages, and `blocks` bytes as 2 MiB
/// blocks at a 1 GiB-aligned address.
pub fn min_tables(z: &Sizes) -> (usize, usize) {
    let pages = z.pages.div_ceil(BLOCK) + z.pages.div_ceil(GIB);
    let blocks = z.blocks.div_ceil(GIB);
    (pages as usize, blocks as usize)
}
