//! `PageCache`: a minimum above the capacity is a typed error (and a capacity below
//! `FAULT_PAGES` does not compile: see the `compile_fail` example on `PageCache`), and a cache
//! dropped with pages in it is counted as a leak, never silently lost.
//!
//! `leaked_pages` is process-wide: only one test in this binary drops a non-empty cache.

use pt_core::testkit::Arena;
use pt_hyp::cache::leaked_pages;
use pt_hyp::{Error, PageCache, FAULT_PAGES};

#[test]
fn top_up_above_capacity_is_cache_too_small_and_allocates_nothing() {
    let arena = Arena::standard();
    let mut cache = PageCache::<4>::empty();
    assert_eq!(
        cache.top_up(&arena, 5),
        Err(Error::CacheTooSmall {
            min: 5,
            capacity: 4
        })
    );
    assert_eq!(
        cache.top_up(&arena, usize::MAX),
        Err(Error::CacheTooSmall {
            min: usize::MAX,
            capacity: 4
        })
    );
    assert_eq!((cache.len(), arena.allocated_pages()), (0, 0));
}

#[test]
fn top_up_to_exactly_the_capacity_fills_the_cache() {
    let arena = Arena::standard();
    let mut cache = PageCache::<FAULT_PAGES>::empty();
    assert_eq!(cache.capacity(), FAULT_PAGES);
    assert_eq!(cache.top_up(&arena, FAULT_PAGES), Ok(()));
    assert_eq!(cache.len(), FAULT_PAGES);
    // Already full enough: nothing more is allocated.
    assert_eq!(cache.top_up(&arena, 1), Ok(()));
    assert_eq!(arena.allocated_pages(), FAULT_PAGES);
    cache.release(&arena);
    assert_eq!((cache.len(), arena.live_pages()), (0, 0));
}

#[test]
fn top_up_zero_is_a_no_op() {
    let arena = Arena::standard();
    let mut cache = PageCache::<8>::new();
    assert_eq!(cache.top_up(&arena, 0), Ok(()));
    assert!(cache.is_empty());
    assert_eq!(arena.allocated_pages(), 0);
}

#[test]
fn dropping_a_cache_with_pages_counts_them_as_leaked() {
    let arena = Arena::standard();
    let before = leaked_pages();

    // Emptied with release: nothing leaks.
    let mut cache = PageCache::<8>::new();
    cache.top_up(&arena, 3).unwrap();
    cache.release(&arena);
    drop(cache);
    assert_eq!(leaked_pages(), before);

    // Dropped holding three pages: the three are counted (and stay allocated).
    let mut cache = PageCache::<8>::new();
    cache.top_up(&arena, 3).unwrap();
    drop(cache);
    assert_eq!(leaked_pages(), before + 3);
    assert_eq!(arena.live_pages(), 3);
}
