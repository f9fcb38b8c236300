//! The hyp-mode manager, on the host, for both architectures: every test is a generic function
//! instantiated for ARMv7 (32-bit HYP VA) and ARMv8 (48-bit EL2 VA) at the bottom.
//!
//! Every test creates an `Arena`, whose break-before-make checker panics on drop when an
//! operation broke the rule.

use pt_core::testkit::{log, Arena};
use pt_core::trace::Record;
use pt_core::{
    Barrier, DescKind, GeometryError, MemType, PageAllocator, Perms, PhysAddr, RangeError,
    Stage1Attrs, TlbOp, TraceEvent, VirtAddr, BLOCK_1G, BLOCK_2M, PAGE_SIZE,
};
use pt_hyp::hyp::{HypArch, HypConfig, HypError, HypRegsArch, HypTables, LinearMap};
use pt_hyp::{Armv7, Armv8, RegisterError};

const RW: Stage1Attrs = Stage1Attrs::normal(Perms::RW);
const RX: Stage1Attrs = Stage1Attrs::normal(Perms::RX);
const RWX: Stage1Attrs = Stage1Attrs::normal(Perms::RWX);

/// What differs between the two architectures in these tests.
trait TestArch: HypArch {
    /// VA bits of the standard configuration.
    const VA_BITS: u8;
    /// Start of the private I/O area.
    const IO_BASE: u64;
    /// Levels of the standard tree.
    const LEVELS: u8;

    fn config(io_size: u64) -> HypConfig {
        HypConfig::new(Self::VA_BITS, 40, VirtAddr(Self::IO_BASE), io_size)
    }
}

impl TestArch for Armv7 {
    const VA_BITS: u8 = 32;
    const IO_BASE: u64 = 0xf000_0000;
    const LEVELS: u8 = 3;
}

impl TestArch for Armv8 {
    const VA_BITS: u8 = 48;
    const IO_BASE: u64 = 0xff00_0000_0000;
    const LEVELS: u8 = 4;
}

/// 128 MiB of I/O area.
const IO_SIZE: u64 = 0x0800_0000;

fn new<A: TestArch>(arena: &Arena) -> HypTables<A, &Arena> {
    HypTables::new(arena, A::config(IO_SIZE)).unwrap()
}

/// Asserts that every page of `[va, va + size)` translates to `pa + offset` with `attrs`, at
/// an offset inside the page too.
fn assert_mapped<A: TestArch>(
    hyp: &HypTables<A, &Arena>,
    va: u64,
    pa: u64,
    size: u64,
    attrs: Stage1Attrs,
) {
    for off in (0..size).step_by(PAGE_SIZE as usize) {
        let t = hyp
            .translate(VirtAddr(va + off + 0x123))
            .unwrap_or_else(|| panic!("{:#x} unmapped", va + off));
        assert_eq!(t.oa, PhysAddr(pa + off + 0x123), "va {:#x}", va + off);
        assert_eq!(t.attrs, attrs, "va {:#x}", va + off);
    }
}

// ---- mapping ----

fn map_range_translates_every_page<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x1_2340_0000),
        16 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    assert_mapped(&hyp, 0x4000_0000, 0x1_2340_0000, 16 * PAGE_SIZE, RW);
    assert_eq!(hyp.translate(VirtAddr(0x4000_0000)).unwrap().level, 3);
    assert_eq!(hyp.translate(VirtAddr(0x3fff_f000)), None);
    assert_eq!(hyp.translate(VirtAddr(0x4001_0000)), None);
    // root + one table per level below it
    assert_eq!(arena.live_pages(), A::LEVELS as usize);
}

fn mapping_into_invalid_entries_issues_no_tlb_op<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x4000_0000),
        64 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    hyp.create_io_mappings(PhysAddr(0x1c09_0000), PAGE_SIZE)
        .unwrap();
    hyp.map_idmap(PhysAddr(0x8000_0000), PAGE_SIZE).unwrap();
    assert_eq!(log::tlb_ops(), []);
    // No invalidation, but ordering: DSB ISHST before each new table is linked, and after the
    // last store of each mapping DSB ISHST + ISB, since the hypervisor uses the mapping from
    // its own instruction stream right away.
    let barriers = log::barriers();
    assert!(barriers.ends_with(&[Barrier::DsbIshSt, Barrier::Isb]));
    assert_eq!(
        barriers.iter().filter(|&&b| b == Barrier::Isb).count(),
        3,
        "one ISB per mapping call"
    );
    assert!(!barriers.contains(&Barrier::DsbIsh));
}

fn new_mapping_is_published_in_order<A: TestArch>() {
    // One page into an empty tree: every table of the walk is new. Each table store comes
    // after a DSB ISHST (the page's zeroing visible first); the leaf store is followed by
    // DSB ISHST and ISB before map_range returns.
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    log::clear();
    hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x4000_0000), PAGE_SIZE, RW)
        .unwrap();
    let order: Vec<&str> = log::records()
        .iter()
        .filter_map(|r| match r {
            Record::Table(TraceEvent::Write { new_kind, .. }) => Some(match new_kind {
                DescKind::Table(_) => "table",
                _ => "leaf",
            }),
            Record::Barrier(Barrier::DsbIshSt) => Some("dsb ishst"),
            Record::Barrier(Barrier::Isb) => Some("isb"),
            Record::Barrier(_) => Some("other"),
            _ => None,
        })
        .collect();
    let tables = order.iter().filter(|&&o| o == "table").count();
    let mut want = Vec::new();
    for _ in 0..tables {
        want.extend(["dsb ishst", "table"]);
    }
    want.extend(["leaf", "dsb ishst", "isb"]);
    assert!(tables >= 1);
    assert_eq!(order, want);
}

fn blocks_where_alignment_allows_pages_elsewhere<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    // 2 MiB + 1 page, both sides 2 MiB aligned: one block then one page.
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x6000_0000),
        BLOCK_2M + PAGE_SIZE,
        RW,
    )
    .unwrap();
    assert_eq!(hyp.translate(VirtAddr(0x4000_0000)).unwrap().level, 2);
    assert_eq!(hyp.translate(VirtAddr(0x401f_f000)).unwrap().level, 2);
    assert_eq!(hyp.translate(VirtAddr(0x4020_0000)).unwrap().level, 3);
    assert_mapped(&hyp, 0x4000_0000, 0x6000_0000, BLOCK_2M + PAGE_SIZE, RW);
    // PA off by one page: pages only.
    hyp.map_range(VirtAddr(0x4080_0000), PhysAddr(0x6080_1000), BLOCK_2M, RW)
        .unwrap();
    assert_eq!(hyp.translate(VirtAddr(0x4080_0000)).unwrap().level, 3);
    assert_mapped(&hyp, 0x4080_0000, 0x6080_1000, BLOCK_2M, RW);
    // 1 GiB aligned on both sides: one level-1 block, no new table.
    let before = arena.live_pages();
    hyp.map_range(VirtAddr(0x8000_0000), PhysAddr(0x1_0000_0000), BLOCK_1G, RX)
        .unwrap();
    assert_eq!(arena.live_pages(), before);
    let t = hyp.translate(VirtAddr(0xbfff_f000)).unwrap();
    assert_eq!((t.level, t.oa), (1, PhysAddr(0x1_3fff_f000)));
}

fn remapping_identically_is_accepted_differently_is_a_conflict<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    let (va, pa) = (VirtAddr(0x4000_0000), PhysAddr(0x5000_0000));
    hyp.map_range(va, pa, 4 * PAGE_SIZE, RW).unwrap();
    let pages = arena.live_pages();
    log::clear();
    // Identical (and overlapping identically): fine, nothing written.
    hyp.map_range(
        VirtAddr(0x4000_1000),
        PhysAddr(0x5000_1000),
        4 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    assert_mapped(&hyp, 0x4000_0000, 0x5000_0000, 5 * PAGE_SIZE, RW);
    // Other PA, other permissions, other memory type: typed error, tree unchanged.
    assert_eq!(
        hyp.map_range(VirtAddr(0x4000_2000), PhysAddr(0x7000_0000), PAGE_SIZE, RW),
        Err(HypError::Conflict {
            va: VirtAddr(0x4000_2000)
        })
    );
    assert_eq!(
        hyp.map_range(va, pa, PAGE_SIZE, Stage1Attrs::normal(Perms::R)),
        Err(HypError::Conflict { va })
    );
    assert_eq!(
        hyp.map_range(
            VirtAddr(0x3fff_f000),
            PhysAddr(0x4fff_f000),
            2 * PAGE_SIZE,
            Stage1Attrs::device()
        ),
        Err(HypError::Conflict { va })
    );
    assert_mapped(&hyp, 0x4000_0000, 0x5000_0000, 5 * PAGE_SIZE, RW);
    assert_eq!(hyp.translate(VirtAddr(0x3fff_f000)), None);
    assert_eq!(arena.live_pages(), pages);
    assert_eq!(log::tlb_ops(), []);
}

fn attributes_are_normalised_so_identical_remaps_match<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    // Without R, and a device with X: stored as R + W, device never executable.
    let w_only = Stage1Attrs::normal(Perms::W);
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x5000_0000),
        PAGE_SIZE,
        w_only,
    )
    .unwrap();
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x5000_0000),
        PAGE_SIZE,
        w_only,
    )
    .unwrap();
    assert_eq!(hyp.translate(VirtAddr(0x4000_0000)).unwrap().attrs, RW);
    let dev_x = Stage1Attrs {
        perms: Perms::R | Perms::X,
        mem: MemType::DeviceNGnRnE,
    };
    hyp.map_range(
        VirtAddr(0x4010_0000),
        PhysAddr(0x1c00_0000),
        PAGE_SIZE,
        dev_x,
    )
    .unwrap();
    let t = hyp.translate(VirtAddr(0x4010_0000)).unwrap();
    assert_eq!(t.attrs.perms, Perms::R);
    assert_eq!(t.attrs.mem, MemType::DeviceNGnRnE);
}

fn write_exec_is_refused_unless_opted_in<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    let va = VirtAddr(0x4000_0000);
    assert_eq!(
        hyp.map_range(va, PhysAddr(0x5000_0000), PAGE_SIZE, RWX),
        Err(HypError::WriteExec { va })
    );
    assert_eq!(
        hyp.create_mappings(0xc000_0000, 0xc000_1000, &LinearMap::IDENTITY, RWX),
        Err(HypError::WriteExec {
            va: VirtAddr(0xc000_0000)
        })
    );
    assert_eq!(hyp.translate(va), None);
    assert_eq!(arena.live_pages(), 1);
    hyp.map_range_allow_wx(va, PhysAddr(0x5000_0000), PAGE_SIZE, RWX)
        .unwrap();
    assert_eq!(hyp.translate(va).unwrap().attrs, RWX);
    // Device memory with W+X is stored without X, so it is not W+X at all.
    let dev = Stage1Attrs {
        perms: Perms::RWX,
        mem: MemType::DeviceNGnRE,
    };
    hyp.map_range(VirtAddr(0x4010_0000), PhysAddr(0x1c00_0000), PAGE_SIZE, dev)
        .unwrap();
    assert_eq!(
        hyp.translate(VirtAddr(0x4010_0000)).unwrap().attrs,
        Stage1Attrs::device()
    );
}

// ---- bad input ----

fn bad_ranges_are_typed_errors_and_change_nothing<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    let limit = 1u64 << A::VA_BITS;
    let pa = PhysAddr(0x5000_0000);
    let cases = [
        (
            VirtAddr(0x4000_0800),
            pa,
            PAGE_SIZE,
            HypError::Range(RangeError::Unaligned {
                value: 0x4000_0800,
                align: PAGE_SIZE,
            }),
        ),
        (
            VirtAddr(0x4000_0000),
            pa,
            0x1800,
            HypError::Range(RangeError::Unaligned {
                value: 0x1800,
                align: PAGE_SIZE,
            }),
        ),
        (
            VirtAddr(0x4000_0000),
            pa,
            0,
            HypError::Range(RangeError::Empty),
        ),
        (
            VirtAddr(0xffff_ffff_ffff_f000),
            pa,
            2 * PAGE_SIZE,
            HypError::Range(RangeError::Wraps),
        ),
        (
            VirtAddr(limit - PAGE_SIZE),
            pa,
            2 * PAGE_SIZE,
            HypError::OutsideVa {
                end: limit + PAGE_SIZE,
                limit,
            },
        ),
        (
            VirtAddr(limit),
            pa,
            PAGE_SIZE,
            HypError::OutsideVa {
                end: limit + PAGE_SIZE,
                limit,
            },
        ),
        (
            VirtAddr(0x4000_0000),
            PhysAddr(0x5000_0010),
            PAGE_SIZE,
            HypError::UnalignedPhys {
                pa: PhysAddr(0x5000_0010),
            },
        ),
        (
            VirtAddr(0x4000_0000),
            PhysAddr((1 << 40) - PAGE_SIZE),
            2 * PAGE_SIZE,
            HypError::OutputTooLarge {
                end: (1 << 40) + PAGE_SIZE,
                bits: 40,
            },
        ),
        (
            VirtAddr(A::IO_BASE - PAGE_SIZE),
            pa,
            2 * PAGE_SIZE,
            HypError::InIoArea {
                va: VirtAddr(A::IO_BASE),
            },
        ),
    ];
    for (va, pa, size, err) in cases {
        assert_eq!(
            hyp.map_range(va, pa, size, RW),
            Err(err),
            "{va:?} {pa:?} {size:#x}"
        );
    }
    assert_eq!(arena.live_pages(), 1, "only the root");
    assert_eq!(log::writes(), 0);
}

fn bad_configurations_are_typed_errors<A: TestArch>() {
    let arena = Arena::standard();
    let too_wide = A::VA_BITS + 1;
    let mut c = A::config(IO_SIZE);
    c.va_bits = too_wide;
    assert!(matches!(
        HypTables::<A, _>::new(&arena, c),
        Err(HypError::Geometry(GeometryError::UnsupportedInputSize { bits, .. })) if bits == too_wide
    ));
    let mut c = A::config(IO_SIZE);
    c.pa_bits = 49;
    assert!(matches!(
        HypTables::<A, _>::new(&arena, c),
        Err(HypError::UnsupportedPaBits { bits: 49, .. })
    ));
    let mut c = A::config(IO_SIZE);
    c.pa_bits = 31;
    assert!(matches!(
        HypTables::<A, _>::new(&arena, c),
        Err(HypError::UnsupportedPaBits { bits: 31, .. })
    ));
    let limit = 1u64 << A::VA_BITS;
    let c = HypConfig::new(A::VA_BITS, 40, VirtAddr(limit - PAGE_SIZE), 2 * PAGE_SIZE);
    assert_eq!(
        HypTables::<A, _>::new(&arena, c).err(),
        Some(HypError::IoAreaOutsideVa {
            end: limit + PAGE_SIZE,
            limit
        })
    );
    let c = HypConfig::new(A::VA_BITS, 40, VirtAddr(A::IO_BASE + 8), PAGE_SIZE);
    assert_eq!(
        HypTables::<A, _>::new(&arena, c).err(),
        Some(HypError::BadIoArea(RangeError::Unaligned {
            value: A::IO_BASE + 8,
            align: PAGE_SIZE
        }))
    );
    let c = HypConfig::new(A::VA_BITS, 40, VirtAddr(A::IO_BASE), 0);
    assert_eq!(
        HypTables::<A, _>::new(&arena, c).err(),
        Some(HypError::BadIoArea(RangeError::Empty))
    );
    arena.fail_nth(1);
    assert_eq!(
        HypTables::<A, _>::new(&arena, A::config(IO_SIZE)).err(),
        Some(HypError::OutOfMemory)
    );
    assert_eq!(arena.live_pages(), 0);
}

fn running_out_of_table_pages_changes_nothing<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    arena.fail_nth(2);
    assert_eq!(
        hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x5000_0000), PAGE_SIZE, RW),
        Err(HypError::OutOfMemory)
    );
    assert_eq!(arena.live_pages(), 1);
    assert_eq!(hyp.translate(VirtAddr(0x4000_0000)), None);
    let next = hyp.io_area().next();
    arena.fail_nth(1);
    assert_eq!(
        hyp.create_io_mappings(PhysAddr(0x1c09_0000), PAGE_SIZE),
        Err(HypError::OutOfMemory)
    );
    assert_eq!(hyp.io_area().next(), next, "the VA is given back");
    assert_eq!(arena.live_pages(), 1);
}

// ---- create_hyp_mappings with a conversion ----

fn create_mappings_applies_a_linear_conversion<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    // Kernel VA 0xc000_0000 is hyp VA 0x4000_0000 and PA 0x8000_0000.
    let conv = LinearMap {
        kernel_base: 0xc000_0000,
        hyp_base: VirtAddr(0x4000_0000),
        phys_base: PhysAddr(0x8000_0000),
    };
    hyp.create_mappings(0xc020_0000, 0xc060_3000, &conv, RX)
        .unwrap();
    assert_mapped(&hyp, 0x4020_0000, 0x8020_0000, 0x40_3000, RX);
    assert_eq!(hyp.translate(VirtAddr(0x4020_0000)).unwrap().level, 2);
    assert_eq!(hyp.translate(VirtAddr(0x4060_0000)).unwrap().level, 3);
    assert_eq!(
        hyp.translate(VirtAddr(0xc020_0000)),
        None,
        "kernel VA itself unmapped"
    );
    assert_eq!(
        hyp.create_mappings(0xb000_0000, 0xb000_1000, &conv, RX),
        Err(HypError::NotConvertible { kva: 0xb000_0000 })
    );
    assert_eq!(
        hyp.create_mappings(0xc000_1000, 0xc000_1000, &conv, RX),
        Err(HypError::Range(RangeError::Empty))
    );
    assert_eq!(
        hyp.create_mappings(0xc000_2000, 0xc000_1000, &conv, RX),
        Err(HypError::Range(RangeError::Wraps))
    );
    assert_eq!(
        hyp.create_mappings(0xc000_0010, 0xc000_1000, &conv, RX),
        Err(HypError::Range(RangeError::Unaligned {
            value: 0xc000_0010,
            align: PAGE_SIZE
        }))
    );
    assert_eq!(log::tlb_ops(), []);
}

fn create_mappings_applies_a_per_page_conversion<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    // Kernel pages 0..8 at 0x1000_0000 map to hyp 0x4000_0000 + page; the PAs of pages 0-3
    // are contiguous, 4-7 are scattered in reverse.
    let conv = |kva: u64| {
        let n = (kva - 0x1000_0000) / PAGE_SIZE;
        let pa = if n < 4 {
            0x9000_0000 + n * PAGE_SIZE
        } else {
            0xa000_0000 - n * PAGE_SIZE
        };
        Some((VirtAddr(0x4000_0000 + n * PAGE_SIZE), PhysAddr(pa)))
    };
    hyp.create_mappings(0x1000_0000, 0x1000_8000, &conv, RW)
        .unwrap();
    for n in 0..8u64 {
        let (va, pa) = conv(0x1000_0000 + n * PAGE_SIZE).unwrap();
        assert_eq!(hyp.translate(va).unwrap().oa, pa, "page {n}");
    }
    assert_eq!(hyp.translate(VirtAddr(0x4000_8000)), None);
}

fn create_mappings_checks_every_run_before_mapping_any<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    // Something else already lives at hyp VA 0x4010_0000.
    hyp.map_range(VirtAddr(0x4010_0000), PhysAddr(0x7000_0000), PAGE_SIZE, RW)
        .unwrap();
    let pages = arena.live_pages();
    // Run 1: kernel page 0 -> hyp 0x4000_0000; run 2: kernel page 1 -> hyp 0x4010_0000.
    let conv = |kva: u64| {
        let n = (kva - 0x1000_0000) / PAGE_SIZE;
        Some((
            VirtAddr(0x4000_0000 + n * 0x10_0000),
            PhysAddr(0x9000_0000 + n * PAGE_SIZE),
        ))
    };
    assert_eq!(
        hyp.create_mappings(0x1000_0000, 0x1000_2000, &conv, RW),
        Err(HypError::Conflict {
            va: VirtAddr(0x4010_0000)
        })
    );
    assert_eq!(
        hyp.translate(VirtAddr(0x4000_0000)),
        None,
        "run 1 not mapped"
    );
    assert_eq!(arena.live_pages(), pages);
    // A kernel page without conversion in the middle: nothing mapped either.
    let holes =
        |kva: u64| (kva != 0x1000_1000).then_some((VirtAddr(kva + 0x3000_0000), PhysAddr(kva)));
    assert_eq!(
        hyp.create_mappings(0x1000_0000, 0x1000_3000, &holes, RW),
        Err(HypError::NotConvertible { kva: 0x1000_1000 })
    );
    assert_eq!(hyp.translate(VirtAddr(0x4000_0000)), None);
    assert_eq!(arena.live_pages(), pages);
}

// ---- the private I/O area ----

fn io_mappings_are_handed_out_upwards_from_the_io_base<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    let a = hyp
        .create_io_mappings(PhysAddr(0x1c09_0000), PAGE_SIZE)
        .unwrap();
    let b = hyp
        .create_io_mappings(PhysAddr(0x2c00_1000), 2 * PAGE_SIZE)
        .unwrap();
    let c = hyp
        .create_exec_mappings(PhysAddr(0x8123_4000), PAGE_SIZE)
        .unwrap();
    assert_eq!(a, VirtAddr(A::IO_BASE));
    assert_eq!(b, VirtAddr(A::IO_BASE + PAGE_SIZE));
    assert_eq!(c, VirtAddr(A::IO_BASE + 3 * PAGE_SIZE));
    assert_eq!(hyp.io_area().next(), VirtAddr(A::IO_BASE + 4 * PAGE_SIZE));
    assert_eq!(hyp.io_area().remaining(), IO_SIZE - 4 * PAGE_SIZE);
    assert_mapped(&hyp, a.0, 0x1c09_0000, PAGE_SIZE, Stage1Attrs::device());
    assert_mapped(&hyp, b.0, 0x2c00_1000, 2 * PAGE_SIZE, Stage1Attrs::device());
    assert_mapped(&hyp, c.0, 0x8123_4000, PAGE_SIZE, RX);
    assert_eq!(hyp.translate(VirtAddr(A::IO_BASE + 4 * PAGE_SIZE)), None);
}

fn io_mapping_of_a_2m_device_is_block_aligned<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    let a = hyp
        .create_io_mappings(PhysAddr(0x1c09_0000), PAGE_SIZE)
        .unwrap();
    let b = hyp
        .create_io_mappings(PhysAddr(0x3fe0_0000), BLOCK_2M)
        .unwrap();
    assert_eq!(a, VirtAddr(A::IO_BASE));
    assert_eq!(b, VirtAddr(A::IO_BASE + BLOCK_2M), "aligned up to 2 MiB");
    let t = hyp.translate(b).unwrap();
    assert_eq!((t.level, t.oa), (2, PhysAddr(0x3fe0_0000)));
    // The next allocation continues after it.
    let c = hyp
        .create_io_mappings(PhysAddr(0x1c0a_0000), PAGE_SIZE)
        .unwrap();
    assert_eq!(c, VirtAddr(A::IO_BASE + 2 * BLOCK_2M));
}

fn io_area_overflow_is_an_error_and_hands_out_nothing<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = HypTables::<A, _>::new(&arena, A::config(4 * PAGE_SIZE)).unwrap();
    let a = hyp
        .create_io_mappings(PhysAddr(0x1c00_0000), 3 * PAGE_SIZE)
        .unwrap();
    assert_eq!(a, VirtAddr(A::IO_BASE));
    assert_eq!(
        hyp.create_io_mappings(PhysAddr(0x1c10_0000), 2 * PAGE_SIZE),
        Err(HypError::IoAreaFull {
            size: 2 * PAGE_SIZE,
            available: PAGE_SIZE
        })
    );
    // A size that would wrap the VA: refused, no panic.
    let huge = !(PAGE_SIZE - 1);
    assert_eq!(
        hyp.create_io_mappings(PhysAddr(0), huge),
        Err(HypError::IoAreaFull {
            size: huge,
            available: PAGE_SIZE
        })
    );
    // A 2 MiB-aligned device that does not fit aligned, nor at all.
    assert!(matches!(
        hyp.create_exec_mappings(PhysAddr(0x4000_0000), BLOCK_2M),
        Err(HypError::IoAreaFull { .. })
    ));
    // The last page still fits.
    let b = hyp
        .create_exec_mappings(PhysAddr(0x8000_0000), PAGE_SIZE)
        .unwrap();
    assert_eq!(b, VirtAddr(A::IO_BASE + 3 * PAGE_SIZE));
    assert_eq!(hyp.io_area().remaining(), 0);
    assert!(matches!(
        hyp.create_io_mappings(PhysAddr(0x1c00_0000), PAGE_SIZE),
        Err(HypError::IoAreaFull { available: 0, .. })
    ));
}

fn io_mapping_bad_input_gives_the_va_back<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    assert_eq!(
        hyp.create_io_mappings(PhysAddr(0x1c09_0004), PAGE_SIZE),
        Err(HypError::Range(RangeError::Unaligned {
            value: 0x1c09_0004,
            align: PAGE_SIZE
        }))
    );
    assert_eq!(
        hyp.create_io_mappings(PhysAddr(0x1c09_0000), 0),
        Err(HypError::Range(RangeError::Empty))
    );
    assert_eq!(
        hyp.create_exec_mappings(PhysAddr(1 << 40), PAGE_SIZE),
        Err(HypError::OutputTooLarge {
            end: (1 << 40) + PAGE_SIZE,
            bits: 40
        })
    );
    assert_eq!(hyp.io_area().next(), VirtAddr(A::IO_BASE));
    assert_eq!(arena.live_pages(), 1);
    assert_eq!(
        hyp.create_io_mappings(PhysAddr(0x1c09_0000), PAGE_SIZE),
        Ok(VirtAddr(A::IO_BASE))
    );
}

// ---- the identity map ----

fn idmap_maps_va_equal_to_pa_executable<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_idmap(PhysAddr(0x8008_0000), 2 * PAGE_SIZE).unwrap();
    assert_mapped(&hyp, 0x8008_0000, 0x8008_0000, 2 * PAGE_SIZE, RX);
    assert_eq!(hyp.idmap(), Some((PhysAddr(0x8008_0000), 2 * PAGE_SIZE)));
    // Again, same range: a no-op. Another range: refused.
    hyp.map_idmap(PhysAddr(0x8008_0000), 2 * PAGE_SIZE).unwrap();
    assert_eq!(
        hyp.map_idmap(PhysAddr(0x9000_0000), PAGE_SIZE),
        Err(HypError::IdmapAlreadyMapped {
            start: PhysAddr(0x8008_0000),
            size: 2 * PAGE_SIZE
        })
    );
}

fn idmap_over_an_identical_mapping_is_shared<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    // The hypervisor maps its text at VA == PA, RX, then the idmap inside it.
    hyp.create_mappings(0x8000_0000, 0x8010_0000, &LinearMap::IDENTITY, RX)
        .unwrap();
    let pages = arena.live_pages();
    log::clear();
    hyp.map_idmap(PhysAddr(0x8008_0000), PAGE_SIZE).unwrap();
    assert_eq!(log::writes(), 0);
    assert_eq!(arena.live_pages(), pages);
    assert_mapped(&hyp, 0x8000_0000, 0x8000_0000, 0x10_0000, RX);
}

fn idmap_colliding_with_a_different_mapping_is_refused<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    // Hyp VA 0x8008_0000 already maps other memory.
    hyp.map_range(
        VirtAddr(0x8008_1000),
        PhysAddr(0x1_0000_0000),
        PAGE_SIZE,
        RX,
    )
    .unwrap();
    let pages = arena.live_pages();
    assert_eq!(
        hyp.map_idmap(PhysAddr(0x8008_0000), 2 * PAGE_SIZE),
        Err(HypError::IdmapCollision {
            va: VirtAddr(0x8008_1000)
        })
    );
    assert_eq!(hyp.translate(VirtAddr(0x8008_0000)), None, "nothing mapped");
    assert_eq!(hyp.idmap(), None);
    assert_eq!(arena.live_pages(), pages);
    // Same PA but writable: also a collision.
    hyp.map_range(VirtAddr(0x9000_0000), PhysAddr(0x9000_0000), PAGE_SIZE, RW)
        .unwrap();
    assert_eq!(
        hyp.map_idmap(PhysAddr(0x9000_0000), PAGE_SIZE),
        Err(HypError::IdmapCollision {
            va: VirtAddr(0x9000_0000)
        })
    );
}

fn hyp_mapping_over_the_idmap_is_an_idmap_collision<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_idmap(PhysAddr(0x8008_0000), PAGE_SIZE).unwrap();
    let conv = LinearMap {
        kernel_base: 0xc000_0000,
        hyp_base: VirtAddr(0x8000_0000),
        phys_base: PhysAddr(0x2_0000_0000),
    };
    assert_eq!(
        hyp.create_mappings(0xc000_0000, 0xc010_0000, &conv, RW),
        Err(HypError::IdmapCollision {
            va: VirtAddr(0x8008_0000)
        })
    );
    assert_eq!(hyp.translate(VirtAddr(0x8000_0000)), None);
    assert_eq!(
        hyp.map_range(VirtAddr(0x8008_0000), PhysAddr(0x8008_0000), PAGE_SIZE, RW),
        Err(HypError::IdmapCollision {
            va: VirtAddr(0x8008_0000)
        })
    );
    // Identical to the idmap: fine.
    hyp.map_range(VirtAddr(0x8008_0000), PhysAddr(0x8008_0000), PAGE_SIZE, RX)
        .unwrap();
}

fn idmap_in_the_io_area_or_beyond_the_va_space_is_refused<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    assert_eq!(
        hyp.map_idmap(PhysAddr(A::IO_BASE + 0x5000), PAGE_SIZE),
        Err(HypError::IdmapCollision {
            va: VirtAddr(A::IO_BASE + 0x5000)
        })
    );
    let limit = 1u64 << A::VA_BITS;
    assert_eq!(
        hyp.map_idmap(PhysAddr(limit), PAGE_SIZE),
        Err(HypError::OutsideVa {
            end: limit + PAGE_SIZE,
            limit
        })
    );
    assert_eq!(
        hyp.map_idmap(PhysAddr(0x8000_0800), PAGE_SIZE),
        Err(HypError::Range(RangeError::Unaligned {
            value: 0x8000_0800,
            align: PAGE_SIZE
        }))
    );
    assert_eq!(hyp.idmap(), None);
    assert_eq!(arena.live_pages(), 1);
}

// ---- unmapping and TLB maintenance ----

fn unmapping_n_pages_issues_n_hyp_va_invalidations<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x5000_0000),
        16 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    let pages = arena.live_pages();
    log::clear();
    // 5 pages of 16: the level-3 table stays, so exactly 5 invalidations.
    hyp.unmap_range(VirtAddr(0x4000_3000), 5 * PAGE_SIZE)
        .unwrap();
    let expect: Vec<TlbOp> = (3..8)
        .map(|n| TlbOp::HypVa {
            va: VirtAddr(0x4000_0000 + n * PAGE_SIZE),
        })
        .collect();
    assert_eq!(log::tlb_ops(), expect);
    assert_eq!(
        log::barriers(),
        [Barrier::DsbIshSt, Barrier::DsbIsh, Barrier::Isb]
    );
    assert_eq!(arena.live_pages(), pages);
    assert_eq!(hyp.translate(VirtAddr(0x4000_3000)), None);
    assert_mapped(&hyp, 0x4000_0000, 0x5000_0000, 3 * PAGE_SIZE, RW);
    assert_mapped(&hyp, 0x4000_8000, 0x5000_8000, 8 * PAGE_SIZE, RW);
}

fn unmapping_beyond_the_batch_threshold_issues_one_hyp_all<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x5000_0000),
        64 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    log::clear();
    hyp.unmap_range(VirtAddr(0x4000_0000), 40 * PAGE_SIZE)
        .unwrap();
    assert_eq!(log::tlb_ops(), [TlbOp::HypAll]);
    assert_eq!(hyp.translate(VirtAddr(0x4002_7000)), None);
    assert!(hyp.translate(VirtAddr(0x4002_8000)).is_some());
}

fn unmapping_everything_frees_every_table_but_the_root<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x5000_0000),
        3 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    hyp.unmap_range(VirtAddr(0x4000_0000), 3 * PAGE_SIZE)
        .unwrap();
    assert_eq!(arena.live_pages(), 1);
    assert_eq!(hyp.translate(VirtAddr(0x4000_0000)), None);
}

fn unmapping_part_of_a_block_is_refused<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x6000_0000), BLOCK_2M, RW)
        .unwrap();
    log::clear();
    assert_eq!(
        hyp.unmap_range(VirtAddr(0x4000_1000), PAGE_SIZE),
        Err(HypError::PartialBlock {
            va: VirtAddr(0x4000_0000)
        })
    );
    assert_eq!(log::tlb_ops(), []);
    assert_mapped(&hyp, 0x4000_0000, 0x6000_0000, BLOCK_2M, RW);
    // The whole block: one by-VA invalidation.
    hyp.unmap_range(VirtAddr(0x4000_0000), BLOCK_2M).unwrap();
    assert_eq!(
        log::tlb_ops()[0],
        TlbOp::HypVa {
            va: VirtAddr(0x4000_0000)
        }
    );
}

fn unmapping_the_idmap_forgets_it<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_idmap(PhysAddr(0x8008_0000), PAGE_SIZE).unwrap();
    hyp.unmap_range(VirtAddr(0x8008_0000), PAGE_SIZE).unwrap();
    assert_eq!(hyp.idmap(), None);
    hyp.map_idmap(PhysAddr(0x9000_0000), PAGE_SIZE).unwrap();
    assert_eq!(hyp.idmap(), Some((PhysAddr(0x9000_0000), PAGE_SIZE)));
}

// ---- freeing ----

fn free_gives_every_page_back_with_one_hyp_all<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_idmap(PhysAddr(0x8008_0000), PAGE_SIZE).unwrap();
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x5000_0000),
        BLOCK_2M + 5 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    hyp.create_mappings(0x1_0000, 0x2_0000, &LinearMap::IDENTITY, RX)
        .unwrap();
    hyp.create_io_mappings(PhysAddr(0x1c09_0000), PAGE_SIZE)
        .unwrap();
    hyp.create_exec_mappings(PhysAddr(0x8010_0000), PAGE_SIZE)
        .unwrap();
    assert!(arena.live_pages() > 4);
    log::clear();
    hyp.free();
    assert_eq!(arena.live_pages(), 0);
    assert_eq!(log::tlb_ops(), [TlbOp::HypAll]);
    assert_eq!(
        log::barriers(),
        [Barrier::DsbIshSt, Barrier::DsbIsh, Barrier::Isb]
    );
}

fn dropping_the_tables_frees_them_too<A: TestArch>() {
    let arena = Arena::standard();
    {
        let mut hyp = new::<A>(&arena);
        hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x5000_0000), PAGE_SIZE, RW)
            .unwrap();
    }
    assert_eq!(arena.live_pages(), 0);
    assert_eq!(arena.allocated_pages(), arena.freed_pages());
}

fn map_unmap_cycles_leak_nothing<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    for i in 0..8u64 {
        let va = VirtAddr(0x4000_0000 + i * 0x1234_5000 % 0x1000_0000);
        hyp.map_range(va, PhysAddr(0x5000_0000), 7 * PAGE_SIZE, RW)
            .unwrap();
        hyp.unmap_range(va, 7 * PAGE_SIZE).unwrap();
        assert_eq!(arena.live_pages(), 1, "cycle {i}");
    }
    hyp.free();
    assert_eq!(arena.live_pages(), 0);
}

// ---- register values ----

fn mmu_regs_point_at_the_root<A: TestArch>() {
    let arena = Arena::standard();
    let hyp = new::<A>(&arena);
    let regs = hyp.mmu_regs().unwrap();
    assert_eq!(regs.ttbr, hyp.root().0);
    assert_eq!(regs.sctlr & 1, 1, "M");
}

// ---- per-architecture tests ----

#[test]
fn armv7_mmu_regs_are_htcr_hmair_httbr_hsctlr() {
    let arena = Arena::standard();
    let hyp = HypTables::<Armv7, _>::new(&arena, Armv7::config(IO_SIZE)).unwrap();
    let regs = hyp.mmu_regs().unwrap();
    assert_eq!(regs.arch, HypRegsArch::Armv7);
    // RES1 bit 31, SH0 = 0b11, ORGN0 = IRGN0 = 0b01, T0SZ = 0.
    assert_eq!(regs.tcr, 0x8000_3500);
    // HMAIR0: Normal WB, Normal NC, Device, Strongly-ordered; HMAIR1 = 0.
    assert_eq!(regs.mair_lo(), 0x0004_44ff);
    assert_eq!(regs.mair_hi(), 0);
    assert_eq!(regs.ttbr, 0x8000_0000, "the arena's first page");
    // RES1 0x30c5_0858 | CP15BEN | I | C | M.
    assert_eq!(regs.sctlr, 0x30c5_187d);
    assert_eq!(
        regs.tcr,
        u64::from(pt_armv7::regs::htcr(&hyp.geometry()).unwrap())
    );
}

#[test]
fn armv7_30_bit_va_starts_at_level_2() {
    let arena = Arena::standard();
    let cfg = HypConfig::new(30, 40, VirtAddr(0x3000_0000), 0x1000_0000);
    let mut hyp = HypTables::<Armv7, _>::new(&arena, cfg).unwrap();
    assert_eq!(hyp.geometry().start_level(), 2);
    assert_eq!(hyp.mmu_regs().unwrap().tcr, 0x8000_3502);
    hyp.map_range(VirtAddr(0x2fff_f000), PhysAddr(0x5000_0000), PAGE_SIZE, RW)
        .unwrap();
    assert_eq!(
        hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x5000_0000), PAGE_SIZE, RW),
        Err(HypError::OutsideVa {
            end: 0x4000_1000,
            limit: 0x4000_0000
        })
    );
}

#[test]
fn armv7_maps_the_last_page_of_the_32_bit_va_space() {
    let arena = Arena::standard();
    let mut hyp = HypTables::<Armv7, _>::new(&arena, Armv7::config(IO_SIZE)).unwrap();
    hyp.map_range(
        VirtAddr(0xffff_f000),
        PhysAddr(0xff_ffff_f000),
        PAGE_SIZE,
        RW,
    )
    .unwrap();
    assert_eq!(
        hyp.translate(VirtAddr(0xffff_ffff)).unwrap().oa,
        PhysAddr(0xff_ffff_ffff)
    );
    hyp.unmap_range(VirtAddr(0xffff_f000), PAGE_SIZE).unwrap();
    assert_eq!(arena.live_pages(), 1);
}

#[test]
fn armv7_idmap_above_4g_is_outside_the_va_space() {
    let arena = Arena::standard();
    let mut hyp = HypTables::<Armv7, _>::new(&arena, Armv7::config(IO_SIZE)).unwrap();
    assert_eq!(
        hyp.map_idmap(PhysAddr(0x1_0000_0000), PAGE_SIZE),
        Err(HypError::OutsideVa {
            end: 0x1_0000_1000,
            limit: 0x1_0000_0000
        })
    );
}

#[test]
fn armv8_mmu_regs_are_tcr_mair_ttbr0_sctlr_el2() {
    let arena = Arena::standard();
    let hyp = HypTables::<Armv8, _>::new(&arena, Armv8::config(IO_SIZE)).unwrap();
    let regs = hyp.mmu_regs().unwrap();
    assert_eq!(regs.arch, HypRegsArch::Armv8);
    // RES1 31 and 23, PS = 0b010 (40 bits), SH0/ORGN0/IRGN0, TG0 = 4K, T0SZ = 16.
    assert_eq!(regs.tcr, 0x8082_3510);
    assert_eq!(regs.mair, 0x0004_44ff);
    assert_eq!(regs.ttbr, 0x8000_0000);
    // RES1 0x30c5_0830 | I | C | M.
    assert_eq!(regs.sctlr, 0x30c5_1835);
}

#[test]
fn armv8_39_bit_va_has_three_levels_and_its_own_t0sz() {
    let arena = Arena::standard();
    let cfg = HypConfig::new(39, 48, VirtAddr(0x7f_0000_0000), 1 << 30);
    let mut hyp = HypTables::<Armv8, _>::new(&arena, cfg).unwrap();
    assert_eq!(hyp.geometry().start_level(), 1);
    let regs = hyp.mmu_regs().unwrap();
    assert_eq!(regs.tcr & 0x3f, 25);
    assert_eq!((regs.tcr >> 16) & 0b111, 0b101, "PS = 48 bits");
    hyp.map_range(
        VirtAddr(0x40_0000_0000),
        PhysAddr(0xffff_0000_0000),
        BLOCK_1G,
        RW,
    )
    .unwrap();
    assert_eq!(hyp.translate(VirtAddr(0x40_0000_0000)).unwrap().level, 1);
    assert_eq!(arena.live_pages(), 1);
}

#[test]
fn armv8_pa_size_without_ps_encoding_is_a_register_error() {
    let arena = Arena::standard();
    let cfg = HypConfig::new(48, 41, VirtAddr(0xff00_0000_0000), IO_SIZE);
    let hyp = HypTables::<Armv8, _>::new(&arena, cfg).unwrap();
    assert_eq!(
        hyp.mmu_regs(),
        Err(RegisterError::Armv8(
            pt_armv8::regs::RegError::UnsupportedPaBits { pa_bits: 41 }
        ))
    );
}

#[test]
fn armv8_maps_the_last_page_of_the_48_bit_va_space() {
    let arena = Arena::standard();
    let mut hyp = HypTables::<Armv8, _>::new(&arena, Armv8::config(IO_SIZE)).unwrap();
    let last = (1u64 << 48) - PAGE_SIZE;
    hyp.map_range(VirtAddr(last), PhysAddr(0x8000_0000), PAGE_SIZE, RW)
        .unwrap();
    assert_eq!(
        hyp.translate(VirtAddr(last)).unwrap().oa,
        PhysAddr(0x8000_0000)
    );
    assert_eq!(hyp.translate(VirtAddr(1 << 48)), None);
}

#[test]
fn errors_display_their_cause() {
    assert_eq!(
        HypError::IoAreaFull {
            size: 0x2000,
            available: 0x1000
        }
        .to_string(),
        "I/O area has 0x1000 bytes left, 0x2000 requested"
    );
    assert_eq!(
        HypError::IdmapCollision {
            va: VirtAddr(0x8000_0000)
        }
        .to_string(),
        "identity map collides with another mapping at 0x80000000"
    );
}

#[test]
fn tables_can_use_a_static_allocator_reference() {
    // PageAllocator is implemented for &T: the manager owns a reference.
    fn takes<P: PageAllocator>(_: &HypTables<Armv8, P>) {}
    let arena = Arena::standard();
    let hyp = HypTables::<Armv8, _>::new(&arena, Armv8::config(IO_SIZE)).unwrap();
    takes(&hyp);
    assert_eq!(hyp.alloc().live_pages(), 1);
}

fn leaked_tables_stay_allocated_and_nothing_is_invalidated<A: TestArch>() {
    let arena = Arena::standard();
    let mut hyp = new::<A>(&arena);
    hyp.map_range(
        VirtAddr(0x4000_0000),
        PhysAddr(0x4000_0000),
        4 * PAGE_SIZE,
        RW,
    )
    .unwrap();
    let root = hyp.root();
    let live = arena.live_pages();
    log::clear();
    // The MMU runs on these tables for good: keep them.
    assert_eq!(hyp.leak(), root);
    assert_eq!(arena.live_pages(), live);
    assert_eq!(log::tlb_ops(), []);
    assert!(arena.is_live(root));
}

macro_rules! for_both_architectures {
    ($($name:ident),* $(,)?) => {
        mod armv7 {
            $(#[test] fn $name() { super::$name::<pt_hyp::Armv7>() })*
        }
        mod armv8 {
            $(#[test] fn $name() { super::$name::<pt_hyp::Armv8>() })*
        }
    };
}

for_both_architectures!(
    map_range_translates_every_page,
    mapping_into_invalid_entries_issues_no_tlb_op,
    new_mapping_is_published_in_order,
    leaked_tables_stay_allocated_and_nothing_is_invalidated,
    blocks_where_alignment_allows_pages_elsewhere,
    remapping_identically_is_accepted_differently_is_a_conflict,
    attributes_are_normalised_so_identical_remaps_match,
    write_exec_is_refused_unless_opted_in,
    bad_ranges_are_typed_errors_and_change_nothing,
    bad_configurations_are_typed_errors,
    running_out_of_table_pages_changes_nothing,
    create_mappings_applies_a_linear_conversion,
    create_mappings_applies_a_per_page_conversion,
    create_mappings_checks_every_run_before_mapping_any,
    io_mappings_are_handed_out_upwards_from_the_io_base,
    io_mapping_of_a_2m_device_is_block_aligned,
    io_area_overflow_is_an_error_and_hands_out_nothing,
    io_mapping_bad_input_gives_the_va_back,
    idmap_maps_va_equal_to_pa_executable,
    idmap_over_an_identical_mapping_is_shared,
    idmap_colliding_with_a_different_mapping_is_refused,
    hyp_mapping_over_the_idmap_is_an_idmap_collision,
    idmap_in_the_io_area_or_beyond_the_va_space_is_refused,
    unmapping_n_pages_issues_n_hyp_va_invalidations,
    unmapping_beyond_the_batch_threshold_issues_one_hyp_all,
    unmapping_everything_frees_every_table_but_the_root,
    unmapping_part_of_a_block_is_refused,
    unmapping_the_idmap_forgets_it,
    free_gives_every_page_back_with_one_hyp_all,
    dropping_the_tables_frees_them_too,
    map_unmap_cycles_leak_nothing,
    mmu_regs_point_at_the_root,
);
