//! The test kit's arena: page counts, injected failures, aligned contiguous runs, misuse.

mod common;

use pt_core::testkit::{log, Arena};
use pt_core::trace::Record;
use pt_core::{PageAllocator, PhysAddr};

const BASE: u64 = 0x8000_0000;

#[test]
fn counts_allocated_freed_and_live_pages() {
    let a = Arena::new(PhysAddr(BASE), 64);
    let p: Vec<PhysAddr> = (0..3).map(|_| a.alloc_zeroed().unwrap()).collect();
    assert_eq!(
        p,
        [
            PhysAddr(BASE),
            PhysAddr(BASE + 0x1000),
            PhysAddr(BASE + 0x2000)
        ]
    );
    a.free(p[1], 1);
    assert_eq!(
        (a.allocated_pages(), a.freed_pages(), a.live_pages()),
        (3, 1, 2)
    );
    assert!(a.is_live(p[0]) && !a.is_live(p[1]) && a.is_live(p[2]));
    let r = a.alloc_contiguous_zeroed(4).unwrap();
    assert_eq!(
        (a.allocated_pages(), a.freed_pages(), a.live_pages()),
        (7, 1, 6)
    );
    a.free(r, 4);
    assert_eq!(a.live_pages(), 2);
    assert_eq!(a.allocation_calls(), 4);
}

#[test]
fn allocations_and_frees_are_recorded() {
    let a = Arena::new(PhysAddr(BASE), 16);
    let p = a.alloc_zeroed().unwrap();
    a.free(p, 1);
    assert_eq!(
        log::records(),
        [
            Record::Alloc { pa: p, pages: 1 },
            Record::Free { pa: p, pages: 1 }
        ]
    );
}

#[test]
fn fail_nth_fails_exactly_that_allocation() {
    let a = Arena::new(PhysAddr(BASE), 16);
    a.alloc_zeroed().unwrap();
    a.fail_nth(2);
    assert!(a.alloc_zeroed().is_some());
    assert_eq!(a.alloc_zeroed(), None);
    assert!(a.alloc_zeroed().is_some(), "only the n-th fails");
    a.fail_nth(1);
    assert_eq!(
        a.alloc_contiguous_zeroed(2),
        None,
        "contiguous runs count too"
    );
    assert_eq!(a.allocation_calls(), 5);
    assert_eq!(a.live_pages(), 3);
    a.fail_nth(1);
    a.stop_failing();
    assert!(a.alloc_zeroed().is_some());
}

#[test]
fn exhausted_arena_returns_none() {
    let a = Arena::new(PhysAddr(BASE), 2);
    assert!(a.alloc_zeroed().is_some());
    assert!(a.alloc_zeroed().is_some());
    assert_eq!(a.alloc_zeroed(), None);
    assert_eq!(a.alloc_contiguous_zeroed(2), None);
}

#[test]
fn contiguous_runs_are_aligned_to_their_size() {
    let a = Arena::new(PhysAddr(BASE), 256);
    a.alloc_zeroed().unwrap(); // page 0: the next run must skip ahead
    for pages in [2usize, 4, 16] {
        let pa = a.alloc_contiguous_zeroed(pages).unwrap();
        assert_eq!(
            (pa.0 - BASE) % (pages as u64 * 4096),
            0,
            "{pages} pages at {pa:?}"
        );
        for i in 0..pages as u64 {
            assert!(a.is_live(PhysAddr(pa.0 + i * 4096)));
        }
    }
    // Page 0, then 2 at 2..4, 4 at 4..8, 16 at 16..32; the skipped pages are reused.
    assert_eq!(a.live_pages(), 1 + 2 + 4 + 16);
    assert_eq!(a.alloc_zeroed(), Some(PhysAddr(BASE + 15 * 4096)));
}

#[test]
fn contiguous_runs_must_be_a_power_of_two_up_to_16() {
    let a = Arena::new(PhysAddr(BASE), 256);
    assert_eq!(a.alloc_contiguous_zeroed(3), None);
    assert_eq!(a.alloc_contiguous_zeroed(32), None);
    assert_eq!(a.live_pages(), 0);
}

#[test]
fn reused_pages_are_zeroed() {
    let a = Arena::new(PhysAddr(BASE), 4);
    let p = a.alloc_zeroed().unwrap();
    // SAFETY: `p` is a live page of the arena; its 512 words belong to this test.
    unsafe { a.phys_to_virt(p).add(7).write(0xdead_beef) };
    a.free(p, 1);
    let q = a.alloc_zeroed().unwrap();
    assert_eq!(q, p);
    // SAFETY: as above.
    assert_eq!(unsafe { a.phys_to_virt(q).add(7).read() }, 0);
}

#[test]
#[should_panic(expected = "double free")]
fn double_free_panics() {
    let a = Arena::new(PhysAddr(BASE), 4);
    let p = a.alloc_zeroed().unwrap();
    a.free(p, 1);
    a.free(p, 1);
}

#[test]
#[should_panic(expected = "not an arena page")]
fn freeing_a_foreign_page_panics() {
    let a = Arena::new(PhysAddr(BASE), 4);
    a.free(PhysAddr(0x1000), 1);
}

#[test]
#[should_panic(expected = "access to free page")]
fn phys_to_virt_of_a_freed_page_panics() {
    let a = Arena::new(PhysAddr(BASE), 4);
    let p = a.alloc_zeroed().unwrap();
    a.free(p, 1);
    a.phys_to_virt(p);
}

#[test]
#[should_panic(expected = "break-before-make checker: 1 violation")]
fn dropping_an_arena_after_a_violation_panics() {
    let a = Arena::new(PhysAddr(BASE), 4);
    let root = a.alloc_zeroed().unwrap();
    // A root that was written and is freed without being retired.
    a.trace(&pt_core::TraceEvent::Write {
        stage: pt_core::Stage::Stage2,
        table: root,
        index: 0,
        level: 1,
        ia: 0,
        old: 0,
        new: 5,
        old_kind: pt_core::DescKind::Invalid,
        new_kind: pt_core::DescKind::Leaf(PhysAddr(0)),
    });
    a.free(root, 1);
}
