//! Several vCPUs faulting into one stage 2 at once (issue 16): threads standing for vCPUs
//! share one `Stage2` behind a mutex (the hypervisor's lock, KVM's `mmu_lock`), each with its
//! own `PageCache` topped up from a `Sync` allocator before it takes the lock, as pt-hyp's
//! porting guide tells a port to do. Afterwards the tree is checked against a model worked
//! out from the fault rules, not from what the code printed: every page is mapped to its host
//! address, each page (or block) was mapped by exactly one fault and found already handled by
//! every other (`Spurious`), the dirty log holds exactly the write faults that dirtied, and
//! every table page is back after teardown.

use pt_core::testkit::{log, SyncArena};
use pt_hyp::fault::{Armv7AbortRegs, Armv8AbortRegs, FaultArch};
use pt_hyp::{
    AbortOutcome, Arch, Armv7, Armv8, Ipa, PageCache, PhysAddr, SlotDesc, SlotFlags, SlotId, Stage2,
};
use std::collections::BTreeMap;
use std::sync::{Barrier, Mutex};

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
/// Threads (vCPUs).
const THREADS: usize = 4;

/// Slot A: 8 MiB at IPA 0x4000_0000 on host 0x1_0000_0000 (both 2 MiB aligned: four blocks).
const A_IPA: u64 = 0x4000_0000;
const A_HOST: u64 = 0x1_0000_0000;
const A_SIZE: u64 = 8 * MIB;
/// Slot B: 1 MiB at IPA 0x5000_0000 on host 0x1_2000_0000 (smaller than a block: pages).
const B_IPA: u64 = 0x5000_0000;
const B_HOST: u64 = 0x1_2000_0000;
const B_SIZE: u64 = MIB;

/// Data-abort syndrome (ESR_EL2 / HSR, the same layout here): EC 0x24 (data abort from a
/// lower exception level), IL, WnR, and the fault status code `dfsc`.
fn syndrome(write: bool, dfsc: u32) -> u32 {
    (0x24 << 26) | (1 << 25) | (u32::from(write) << 6) | dfsc
}
/// DFSC of a translation fault at `level` (0b0001LL) and of a permission fault (0b0011LL),
/// long-descriptor format on both architectures.
fn translation(level: u32) -> u32 {
    0b00_0100 | level
}
fn permission(level: u32) -> u32 {
    0b00_1100 | level
}

/// How a test builds the abort registers of its architecture: the guest's VA is its IPA
/// (stage 1 off), HPFAR holds the IPA's page number in bits [n:4].
trait Regs: Arch + FaultArch {
    fn regs(esr: u32, ipa: u64) -> Self::Regs;
}

impl Regs for Armv8 {
    fn regs(esr: u32, ipa: u64) -> Armv8AbortRegs {
        Armv8AbortRegs {
            esr: esr.into(),
            far: ipa,
            hpfar: (ipa >> 12) << 4,
        }
    }
}

impl Regs for Armv7 {
    fn regs(esr: u32, ipa: u64) -> Armv7AbortRegs {
        Armv7AbortRegs {
            hsr: esr,
            hdfar: ipa as u32,
            hifar: 0,
            hpfar: ((ipa >> 12) << 4) as u32,
        }
    }
}

/// A 40-bit VM with slots A and B, nothing mapped.
fn new_vm<A: Regs>(arena: &SyncArena) -> (Stage2<A, &SyncArena>, SlotId, SlotId) {
    let mut vm = Stage2::<A, _>::new(arena, 40, 1).unwrap();
    let a = vm
        .add_memslot(SlotDesc {
            ipa: Ipa(A_IPA),
            size: A_SIZE,
            host: PhysAddr(A_HOST),
            flags: SlotFlags::default(),
        })
        .unwrap();
    let b = vm
        .add_memslot(SlotDesc {
            ipa: Ipa(B_IPA),
            size: B_SIZE,
            host: PhysAddr(B_HOST),
            flags: SlotFlags::default(),
        })
        .unwrap();
    (vm, a, b)
}

/// Every page of both slots, as `(ipa, host)`.
fn all_pages() -> Vec<(u64, u64)> {
    let a = (0..A_SIZE / PAGE).map(|i| (A_IPA + i * PAGE, A_HOST + i * PAGE));
    let b = (0..B_SIZE / PAGE).map(|i| (B_IPA + i * PAGE, B_HOST + i * PAGE));
    a.chain(b).collect()
}

/// Thread `t`'s order over `pages`: a rotation by a quarter per thread, odd threads
/// backwards, so that the threads meet on the same pages from different sides.
fn order(pages: &[(u64, u64)], t: usize) -> Vec<(u64, u64)> {
    let n = pages.len();
    let mut v: Vec<_> = (0..n).map(|i| pages[(i + t * n / THREADS) % n]).collect();
    if t % 2 == 1 {
        v.reverse();
    }
    v
}

/// One fault of a vCPU: top up its own cache without the lock, then handle the abort under
/// it, topping up again (under the lock, the slow path) if the cache ran short.
fn fault<A: Regs>(
    vm: &Mutex<Stage2<A, &SyncArena>>,
    arena: &SyncArena,
    cache: &mut PageCache,
    fault_pages: usize,
    regs: &A::Regs,
) -> AbortOutcome {
    cache.top_up(arena, fault_pages).unwrap();
    let mut vm = vm.lock().unwrap();
    loop {
        match vm.handle_guest_abort(cache, regs) {
            Err(pt_hyp::Error::CacheExhausted { .. }) => cache.top_up(arena, fault_pages).unwrap(),
            r => return r.unwrap(),
        }
    }
}

/// What one thread saw, per page IPA.
#[derive(Default)]
struct Seen {
    /// Leaves a fault of this thread mapped: their first IPA and size.
    mapped: Vec<(u64, u64)>,
    /// Pages whose write fault this thread handled as `Dirtied`, and whether a block was
    /// dissolved for it.
    dirtied: Vec<(u64, bool)>,
    spurious: usize,
}

/// Phase 1: every thread takes a translation fault on every page of both slots, all at once
/// (even threads write, odd ones read). Phase 2: dirty logging on both slots; every thread
/// takes a write-permission fault on every page again.
fn faults_from_every_thread<A>()
where
    A: Regs + Send + Sync,
    A::Maint: Send + Sync,
{
    let arena = SyncArena::new(PhysAddr(0x8000_0000), 1 << 12);
    let (vm, a, b) = new_vm::<A>(&arena);
    let fault_pages = vm.fault_pages();
    let vm = Mutex::new(vm);
    let pages = all_pages();
    let n = pages.len();

    let run = |phase: u8| -> Vec<Seen> {
        let start = Barrier::new(THREADS);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (vm, arena, pages, start) = (&vm, &arena, &pages, &start);
                    s.spawn(move || {
                        let mut cache = PageCache::new();
                        let mut seen = Seen::default();
                        start.wait();
                        for (ipa, _) in order(pages, t) {
                            let in_a = ipa < B_IPA;
                            let esr = match phase {
                                // Level 1: the walk of a 40-bit IPA starts there and finds
                                // nothing yet.
                                1 => syndrome(t % 2 == 0, translation(1)),
                                // A write to a read-only (logged) leaf: a block in A, a page
                                // in B.
                                _ => syndrome(true, permission(if in_a { 2 } else { 3 })),
                            };
                            // A permission fault's IPA comes from the guest's stage 1 (AT of
                            // FAR); on the host the test states the result, per thread.
                            if phase == 2 {
                                log::queue_par(ipa);
                            }
                            let regs = A::regs(esr, ipa);
                            match fault(vm, arena, &mut cache, fault_pages, &regs) {
                                AbortOutcome::Mapped { ipa, size, .. } => {
                                    seen.mapped.push((ipa.0, size))
                                }
                                AbortOutcome::Dirtied { ipa, dissolved, .. } => {
                                    seen.dirtied.push((ipa.0, dissolved))
                                }
                                AbortOutcome::Spurious => seen.spurious += 1,
                                other => panic!("thread {t}: page {ipa:#x}: {other:?}"),
                            }
                        }
                        cache.release(arena);
                        seen
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };

    // Phase 1. Slot A is four 2 MiB blocks (IPA and host congruent modulo 2 MiB, the slot
    // holds them whole), slot B 256 pages: 260 leaves, each mapped by exactly one fault; every
    // other fault of the 4 * 2304 finds its page mapped.
    let seen = run(1);
    let mut leaves: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for s in &seen {
        for &(ipa, size) in &s.mapped {
            let e = leaves.entry(ipa).or_insert((size, 0));
            assert_eq!(e.0, size);
            e.1 += 1;
        }
    }
    let blocks: Vec<u64> = (0..4).map(|i| A_IPA + i * 2 * MIB).collect();
    assert_eq!(leaves.len(), 4 + 256);
    for (ipa, (size, times)) in &leaves {
        assert_eq!(*times, 1, "leaf {ipa:#x} mapped {times} times");
        let expect = if blocks.contains(ipa) { 2 * MIB } else { PAGE };
        assert_eq!(*size, expect, "leaf {ipa:#x}");
    }
    let spurious: usize = seen.iter().map(|s| s.spurious).sum();
    assert_eq!(spurious, THREADS * n - 260);
    {
        let vm = vm.lock().unwrap();
        for &(ipa, host) in &pages {
            let t = vm.translate(Ipa(ipa)).unwrap();
            assert_eq!(t.pa, PhysAddr(host), "IPA {ipa:#x}");
            assert!(
                t.attrs.perms.write(),
                "IPA {ipa:#x} writable before logging"
            );
            assert_eq!(t.size, if ipa < B_IPA { 2 * MIB } else { PAGE });
        }
    }

    // Phase 2. Logging makes every leaf read-only. The first write into a block dissolves
    // it (KVM's `stage2_dissolve_pmd`: the block goes, its 512 pages all count as dirty) and
    // maps its page writable (Dirtied, dissolved); the other 511 pages of that block are
    // unmapped by then, so the first write fault on each maps it as a writable page (Mapped,
    // 4 KiB). Slot B's pages are made writable in place (Dirtied). Either way each page gets
    // exactly one such outcome; the other three faults on it find it writable (Spurious).
    {
        let mut vm = vm.lock().unwrap();
        vm.enable_dirty_logging(a).unwrap();
        vm.enable_dirty_logging(b).unwrap();
    }
    let seen = run(2);
    let mut handled: BTreeMap<u64, usize> = BTreeMap::new();
    let (mut dissolved, mut dirtied_b, mut mapped_a) = (0, 0, 0);
    for s in &seen {
        for &(ipa, how) in &s.dirtied {
            *handled.entry(ipa).or_default() += 1;
            match (ipa < B_IPA, how) {
                (true, true) => dissolved += 1,
                (false, false) => dirtied_b += 1,
                other => panic!("page {ipa:#x}: Dirtied (in A, dissolved) = {other:?}"),
            }
        }
        for &(ipa, size) in &s.mapped {
            assert!(ipa < B_IPA && size == PAGE, "Mapped {ipa:#x} {size:#x}");
            *handled.entry(ipa).or_default() += 1;
            mapped_a += 1;
        }
    }
    assert_eq!(handled.len(), n);
    assert!(handled.values().all(|&k| k == 1));
    assert_eq!((dissolved, dirtied_b, mapped_a), (4, 256, 2048 - 4));
    let spurious: usize = seen.iter().map(|s| s.spurious).sum();
    assert_eq!(spurious, (THREADS - 1) * n);
    let mut vm = vm.into_inner().unwrap();
    for &(ipa, host) in &pages {
        let t = vm.translate(Ipa(ipa)).unwrap();
        assert_eq!((t.pa, t.size), (PhysAddr(host), PAGE), "IPA {ipa:#x}");
        assert!(
            t.attrs.perms.write(),
            "IPA {ipa:#x} writable after its dirtying fault"
        );
    }
    // The log: every page of both slots.
    let mut bits = vec![0u64; (A_SIZE / PAGE / 64) as usize];
    assert_eq!(vm.get_dirty_log(a, &mut bits).unwrap(), A_SIZE / PAGE);
    assert!(bits.iter().all(|&w| w == u64::MAX));
    assert_eq!(vm.get_dirty_log(b, &mut bits).unwrap(), B_SIZE / PAGE);

    // Teardown: every table and bitmap page back (the caches were released by their threads).
    drop(vm);
    assert_eq!(arena.live_pages(), 0);
}

/// Writers fault on slot B's pages round after round while one more thread fetches the dirty
/// log (re-protecting what it reports) again and again, as a migration's pre-copy does. Between
/// two fetches a page is dirtied by at most one write fault (after it, the page is writable
/// until the next fetch protects it), and every dirtying is reported by exactly the next fetch
/// that follows it: so for every page, the number of `Dirtied` outcomes equals the number of
/// fetched logs (the last one after the writers stopped) that hold it.
fn dirty_log_fetched_while_faulting<A>()
where
    A: Regs + Send + Sync,
    A::Maint: Send + Sync,
{
    let arena = SyncArena::new(PhysAddr(0x8000_0000), 1 << 12);
    let (mut vm, a, b) = new_vm::<A>(&arena);
    vm.map_ram(
        Ipa(B_IPA),
        PhysAddr(B_HOST),
        B_SIZE,
        pt_hyp::Perms::RW,
        pt_hyp::BlockSize::Page,
    )
    .unwrap();
    vm.enable_dirty_logging(b).unwrap();
    let fault_pages = vm.fault_pages();
    let vm = Mutex::new(vm);
    let pages: Vec<(u64, u64)> = all_pages().into_iter().filter(|p| p.0 >= B_IPA).collect();
    let words = (B_SIZE / PAGE / 64) as usize;
    let rounds = 6;
    let writers_done = std::sync::atomic::AtomicUsize::new(0);

    let (seen, logs) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (vm, arena, pages, done) = (&vm, &arena, &pages, &writers_done);
                s.spawn(move || {
                    let mut cache = PageCache::new();
                    let mut seen = Seen::default();
                    for _ in 0..rounds {
                        for (ipa, _) in order(pages, t) {
                            log::queue_par(ipa);
                            let regs = A::regs(syndrome(true, permission(3)), ipa);
                            match fault(vm, arena, &mut cache, fault_pages, &regs) {
                                AbortOutcome::Dirtied { ipa, dissolved, .. } => {
                                    seen.dirtied.push((ipa.0, dissolved))
                                }
                                AbortOutcome::Spurious => seen.spurious += 1,
                                other => panic!("thread {t}: page {ipa:#x}: {other:?}"),
                            }
                        }
                    }
                    cache.release(arena);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    seen
                })
            })
            .collect();
        let fetcher = s.spawn(|| {
            let mut logs = Vec::new();
            loop {
                // Read before the fetch: once every writer is done, this fetch is the last.
                let last = writers_done.load(std::sync::atomic::Ordering::SeqCst) == THREADS;
                let mut bits = vec![0u64; words];
                vm.lock().unwrap().get_dirty_log(b, &mut bits).unwrap();
                logs.push(bits);
                if last {
                    return logs;
                }
                std::thread::yield_now();
            }
        });
        let seen: Vec<Seen> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        (seen, fetcher.join().unwrap())
    });

    let mut dirtied: BTreeMap<u64, usize> = BTreeMap::new();
    for s in &seen {
        for &(ipa, dissolved) in &s.dirtied {
            assert!(!dissolved, "page {ipa:#x}: slot B has no blocks");
            *dirtied.entry(ipa).or_default() += 1;
        }
    }
    let mut reported: BTreeMap<u64, usize> = BTreeMap::new();
    for bits in &logs {
        for (w, &word) in bits.iter().enumerate() {
            for i in 0..64 {
                if word & (1 << i) != 0 {
                    *reported
                        .entry(B_IPA + (w * 64 + i) as u64 * PAGE)
                        .or_default() += 1;
                }
            }
        }
    }
    assert_eq!(dirtied, reported);
    // The first round dirties every page once at least; the rest depends on the interleaving.
    assert_eq!(dirtied.len(), pages.len());
    let faults = THREADS * rounds * pages.len();
    let spurious: usize = seen.iter().map(|s| s.spurious).sum();
    assert_eq!(spurious + dirtied.values().sum::<usize>(), faults);

    let mut vm = vm.into_inner().unwrap();
    for &(ipa, host) in &pages {
        assert_eq!(vm.translate(Ipa(ipa)).unwrap().pa, PhysAddr(host));
    }
    // Slot A was never touched: nothing mapped there, no log to fetch.
    assert!(vm.translate(Ipa(A_IPA)).is_none());
    assert!(vm.get_dirty_log(a, &mut vec![0u64; 64]).is_err());
    drop(vm);
    assert_eq!(arena.live_pages(), 0);
}

/// What a port shares between CPUs must be `Send` (the VM behind a lock) or `Sync` (the
/// allocator every CPU tops its cache up from); each vCPU's cache is moved to its CPU.
#[test]
fn shared_types_are_send_and_sync() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    sync::<SyncArena>();
    send::<Stage2<Armv8, &SyncArena>>();
    send::<Stage2<Armv7, &SyncArena>>();
    sync::<Mutex<Stage2<Armv8, &SyncArena>>>();
    send::<PageCache>();
}

#[test]
fn armv8_faults_from_every_thread() {
    faults_from_every_thread::<Armv8>();
}

#[test]
fn armv7_faults_from_every_thread() {
    faults_from_every_thread::<Armv7>();
}

#[test]
fn armv8_dirty_log_fetched_while_faulting() {
    dirty_log_fetched_while_faulting::<Armv8>();
}

#[test]
fn armv7_dirty_log_fetched_while_faulting() {
    dirty_log_fetched_while_faulting::<Armv7>();
}
