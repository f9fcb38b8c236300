//! The API as a new user meets it (issue 18, points 1 and 2): error messages, error sources,
//! everything in the signatures reachable from pt-hyp, `Debug` on the managers, and a page
//! cache without a type annotation.

use core::error::Error as _;
use pt_core::testkit::Arena;
use pt_hyp::hyp::{HypConfig, HypError, HypTables};
use pt_hyp::{
    AbortOutcome, Armv8, Armv8AbortRegs, Error, GeometryError, GuestMemoryError, Ipa, PageCache,
    PhysAddr, RangeError, RegisterError, SlotDesc, SlotFlags, SlotId, Stage2, VirtAddr,
    DEFAULT_CAPACITY, MAX_LOGGED_SLOT,
};

#[test]
fn page_cache_new_needs_no_annotation() {
    let alloc = Arena::standard();
    let mut vm = Stage2::<Armv8, _>::new(&alloc, 40, 1).unwrap();
    vm.add_memslot(SlotDesc {
        ipa: Ipa(0x4000_0000),
        size: 1 << 21,
        host: PhysAddr(0x4800_0000),
        flags: SlotFlags::default(),
    })
    .unwrap();
    // No `::<8>`: the default capacity.
    let mut cache = PageCache::new();
    assert_eq!(cache.capacity(), DEFAULT_CAPACITY);
    assert_eq!(DEFAULT_CAPACITY, 8);
    cache.top_up(&alloc, vm.fault_pages()).unwrap();
    // Data abort, translation fault level 1, write.
    let esr = (0x24 << 26) | (1 << 25) | (1 << 6) | 0b00_0101;
    let regs = Armv8AbortRegs {
        esr,
        far: 0x4000_1000,
        hpfar: (0x4000_1000 >> 12) << 4,
    };
    let o = vm.handle_guest_abort(&mut cache, &regs).unwrap();
    assert!(matches!(o, AbortOutcome::Mapped { .. }));
    cache.release(&alloc);
    assert_eq!(PageCache::<16>::empty().capacity(), 16);
}

#[test]
fn display_is_a_message_with_hex_addresses() {
    let cases: [(Error, &str); 6] = [
        (
            Error::Conflict { ia: 0x4000_1000 },
            "a different mapping exists at 0x40001000",
        ),
        (
            Error::InputTooLarge {
                end: 0x100_0000_1000,
                limit: 0x100_0000_0000,
            },
            "range end 0x10000001000 beyond the input space (0x10000000000)",
        ),
        (
            Error::DirtyLogBufferTooSmall {
                slot: SlotId(2),
                words: 1,
                needed: 8,
            },
            "dirty-log buffer of 1 words too small for memslot 2 (8 needed)",
        ),
        (
            Error::SlotTooLarge { size: 1 << 32 },
            "memslot of 0x100000000 bytes too large for a dirty log (at most 0x80000000)",
        ),
        (
            Error::NotGuestAbort { ec: 0x16 },
            "exception class 0x16 is not a guest abort",
        ),
        (
            Error::GuestMemory(GuestMemoryError {
                pa: PhysAddr(0x1_0000_0000),
            }),
            "guest memory unreachable: no hypervisor virtual address for guest memory at \
             0x100000000",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
        assert!(!e.to_string().contains('{'), "{e}");
    }
    assert_eq!(
        HypError::Conflict {
            va: VirtAddr(0x7f_c000_0000)
        }
        .to_string(),
        "conflicting mapping at 0x7fc0000000"
    );
    assert_eq!(MAX_LOGGED_SLOT, 2 << 30);
}

#[test]
fn wrapping_errors_have_a_source() {
    let e = Error::Range(RangeError::Empty);
    assert_eq!(e.source().unwrap().to_string(), "empty range");
    let g = GeometryError::UnsupportedInputSize {
        bits: 50,
        min: 25,
        max: 48,
    };
    assert_eq!(
        Error::Geometry(g).source().unwrap().to_string(),
        g.to_string()
    );
    let alloc = Arena::standard();
    let reg = Stage2::<Armv8, _>::new(&alloc, 40, 0x100).unwrap_err();
    let Error::Register(r) = reg else {
        panic!("{reg:?}")
    };
    assert!(matches!(r, RegisterError::Armv8(_)));
    // Two levels: pt-hyp's error, the backend selector, the backend's own error.
    assert_eq!(reg.source().unwrap().to_string(), r.to_string());
    assert!(reg.source().unwrap().source().is_some());
    assert!(Error::OutOfMemory.source().is_none());
    assert_eq!(
        HypError::Range(RangeError::Wraps)
            .source()
            .unwrap()
            .to_string(),
        RangeError::Wraps.to_string()
    );
}

#[test]
fn managers_and_cache_are_debug() {
    let alloc = Arena::standard();
    let vm = Stage2::<Armv8, _>::new(&alloc, 40, 3).unwrap();
    let text = format!("{vm:?}");
    assert!(
        text.starts_with("Stage2 { arch: \"armv8\", vmid: 3,"),
        "{text}"
    );
    assert!(text.contains("vttbr: 0x0003"), "{text}");
    let hyp = HypTables::<Armv8, _>::new(
        &alloc,
        HypConfig::new(39, 40, VirtAddr(0x7f_c000_0000), 1 << 30),
    )
    .unwrap();
    assert!(format!("{hyp:?}").starts_with("HypTables { arch: \"armv8\""));
    let cache = PageCache::new();
    assert_eq!(format!("{cache:?}"), "PageCache { capacity: 8, pages: [] }");
}

/// Everything a signature of pt-hyp names can be named through pt-hyp alone.
#[test]
fn signature_types_are_reachable_from_pt_hyp() {
    fn takes<T>(_: Option<T>) {}
    takes::<pt_hyp::Geometry>(None);
    takes::<pt_hyp::Translation<pt_hyp::Stage1Attrs>>(None);
    takes::<pt_hyp::RangeError>(None);
    takes::<pt_hyp::GeometryError>(None);
    takes::<pt_hyp::GuestMemoryError>(None);
    takes::<pt_hyp::DumpStats>(None);
    takes::<pt_hyp::TraceEvent>(None);
    takes::<pt_hyp::pt_armv8::regs::RegError>(None);
    takes::<pt_hyp::pt_armv7::regs::RegError>(None);
    takes::<pt_hyp::pt_core::ops::Leaf<pt_hyp::Stage2Attrs>>(None);
    fn addr<A: pt_hyp::Address>(a: A) -> u64 {
        a.raw()
    }
    assert_eq!(addr(Ipa(0x1000)), 0x1000);
    let g: pt_hyp::Geometry = Stage2::<Armv8, _>::new(&Arena::standard(), 32, 1)
        .unwrap()
        .geometry();
    assert_eq!(g.ia_bits(), 32);
}
