//! Guest-abort handling (`kvm_handle_guest_abort`, `user_mem_abort`, `handle_access_fault`,
//! `io_mem_abort`), for ARMv7 and ARMv8 and for 32- and 40-bit IPAs.
//!
//! Syndromes are built here from each architecture's field positions, so the tests pin the
//! decode against the architecture, not against the code under test.

use pt_core::testkit::{log, Arena, GUEST_VA_OFFSET};
use pt_core::trace::Record;
use pt_core::{CacheOp, TlbOp, BLOCK_1G, BLOCK_2M, PAGE_SIZE};
use pt_hyp::fault::{block_allowed, decode_armv7, decode_armv8, leaf_level};
use pt_hyp::{
    AbortKind, AbortOutcome, Armv7, Armv7AbortRegs, Armv8, Armv8AbortRegs, DecodeError, Error,
    FaultArch, FaultStatus, InjectReason, Injection, Ipa, MmioAccess, PageCache, Perms, PhysAddr,
    SlotDesc, SlotFlags, SlotId, Stage2,
};

// ----- syndrome fields ---------------------------------------------------------------------

/// Translation fault at level `l` (`0b0001LL`).
const fn trans(l: u64) -> u64 {
    0b00_0100 | l
}
/// Access flag fault at level `l` (`0b0010LL`).
const fn af(l: u64) -> u64 {
    0b00_1000 | l
}
/// Permission fault at level `l` (`0b0011LL`).
const fn perm(l: u64) -> u64 {
    0b00_1100 | l
}
/// Synchronous external abort, not on a walk.
const SEA: u64 = 0b01_0000;
/// Synchronous external abort on the level-2 walk.
const SEA_WALK_L2: u64 = 0b01_0110;
/// Alignment fault.
const ALIGNMENT: u64 = 0b10_0001;

/// The syndrome fields a test sets; each architecture's builder places them.
#[derive(Clone, Copy)]
struct Syn {
    ec: u64,
    il: bool,
    isv: bool,
    sas: u64,
    sse: bool,
    srt: u64,
    sf: bool,
    ar: bool,
    ea: bool,
    cm: bool,
    s1ptw: bool,
    wnr: bool,
    fsc: u64,
    /// Not a syndrome field: the guest's SCTLR has M and C set.
    caches_on: bool,
}

const DABT: u64 = 0x24;
const IABT: u64 = 0x20;

/// A 32-bit load of a word into register 5, with a valid syndrome.
const LOAD: Syn = Syn {
    ec: DABT,
    il: true,
    isv: true,
    sas: 2,
    sse: false,
    srt: 5,
    sf: false,
    ar: false,
    ea: false,
    cm: false,
    s1ptw: false,
    wnr: false,
    fsc: trans(1),
    caches_on: true,
};

const fn load(fsc: u64) -> Syn {
    Syn { fsc, ..LOAD }
}
const fn store(fsc: u64) -> Syn {
    Syn {
        fsc,
        wnr: true,
        ..LOAD
    }
}
const fn fetch(fsc: u64) -> Syn {
    Syn {
        ec: IABT,
        isv: false,
        sas: 0,
        srt: 0,
        fsc,
        ..LOAD
    }
}

fn b(v: bool) -> u64 {
    v as u64
}

/// ESR_EL2: EC[31:26] IL[25] ISV[24] SAS[23:22] SSE[21] SRT[20:16] SF[15] AR[14] EA[9] CM[8]
/// S1PTW[7] WnR[6] DFSC[5:0].
fn esr_el2(s: &Syn) -> u64 {
    (s.ec << 26)
        | (b(s.il) << 25)
        | (b(s.isv) << 24)
        | (s.sas << 22)
        | (b(s.sse) << 21)
        | (s.srt << 16)
        | (b(s.sf) << 15)
        | (b(s.ar) << 14)
        | (b(s.ea) << 9)
        | (b(s.cm) << 8)
        | (b(s.s1ptw) << 7)
        | (b(s.wnr) << 6)
        | s.fsc
}

/// HSR: EC[31:26] IL[25] ISV[24] SAS[23:22] SSE[21] SRT[19:16] EA[9] CM[8] S1PTW[7] WnR[6]
/// DFSC[5:0]; no SF, no AR.
fn hsr(s: &Syn) -> u32 {
    ((s.ec << 26)
        | (b(s.il) << 25)
        | (b(s.isv) << 24)
        | (s.sas << 22)
        | (b(s.sse) << 21)
        | ((s.srt & 0xf) << 16)
        | (b(s.ea) << 9)
        | (b(s.cm) << 8)
        | (b(s.s1ptw) << 7)
        | (b(s.wnr) << 6)
        | s.fsc) as u32
}

/// The guest's SCTLR: I, C and M with its caches on; M alone with them off.
fn sctlr(s: &Syn) -> u64 {
    if s.caches_on {
        (1 << 12) | (1 << 2) | 1
    } else {
        1
    }
}

/// The faulting VA the tests report: a page of its own plus the IPA's page offset.
fn far_of(ipa: u64) -> u64 {
    0x1234_5000 | (ipa & 0xfff)
}

/// Takes the abort `s` at `ipa` as a hypervisor that knows its guest's SCTLR does: decode,
/// add the cache state, handle; what does not decode goes through the raw-register entry.
fn take<A: TestArch>(
    s2: &mut Stage2<A, &Arena>,
    cache: &mut PageCache<8>,
    s: &Syn,
    ipa: u64,
) -> Result<AbortOutcome, Error> {
    let regs = if hpfar_unknown(s) {
        // The architecture leaves HPFAR UNKNOWN for a stage-2 permission fault of the access
        // itself: report another page there, and let the guest's stage 1 (the address
        // translation of FAR) say where FAR really goes.
        log::queue_par(par_of(ipa));
        A::regs_with_hpfar(s, ipa, ipa ^ 0x5000)
    } else {
        A::regs(s, ipa)
    };
    match A::decode_abort(&regs) {
        Ok(a) => s2.handle_abort(cache, &a.with_guest_sctlr(sctlr(s))),
        Err(_) => s2.handle_guest_abort(cache, &regs),
    }
}

/// Whether HPFAR is UNKNOWN for this syndrome: a stage-2 permission fault not on a stage-1
/// walk (ARM ARM HPFAR_EL2; DDI 0406C B4.1.84 HPFAR).
fn hpfar_unknown(s: &Syn) -> bool {
    s.fsc & 0b11_1100 == 0b00_1100 && !s.s1ptw
}

/// The PAR an address translation of `far_of(ipa)` through the guest's stage 1 reports: the
/// IPA's page in bits [39:12] (ARMv7 64-bit format) / [47:12] (ARMv8), plus what else a
/// successful translation sets, which must be masked off: ATTR[63:56] = 0xff (normal
/// write-back), bit 11 (LPAE on ARMv7, RES1 on ARMv8), SH[8:7] = 0b11.
fn par_of(ipa: u64) -> u64 {
    (0xff << 56) | (ipa & !0xfff) | (1 << 11) | (0b11 << 7)
}

trait TestArch: FaultArch {
    const V8: bool;
    /// The registers of abort `s` at `ipa`, with HPFAR holding `hpfar_ipa`'s page.
    fn regs_with_hpfar(s: &Syn, ipa: u64, hpfar_ipa: u64) -> Self::Regs;
    fn regs(s: &Syn, ipa: u64) -> Self::Regs {
        Self::regs_with_hpfar(s, ipa, ipa)
    }
}

impl TestArch for Armv8 {
    const V8: bool = true;
    fn regs_with_hpfar(s: &Syn, ipa: u64, hpfar_ipa: u64) -> Armv8AbortRegs {
        Armv8AbortRegs {
            esr: esr_el2(s),
            far: far_of(ipa),
            // HPFAR_EL2.FIPA[43:4] = IPA[51:12].
            hpfar: (hpfar_ipa >> 12) << 4,
        }
    }
}

impl TestArch for Armv7 {
    const V8: bool = false;
    fn regs_with_hpfar(s: &Syn, ipa: u64, hpfar_ipa: u64) -> Armv7AbortRegs {
        let far = far_of(ipa) as u32;
        let (hdfar, hifar) = if s.ec == IABT { (0, far) } else { (far, 0) };
        Armv7AbortRegs {
            hsr: hsr(s),
            hdfar,
            hifar,
            // HPFAR[31:4] = IPA[39:12].
            hpfar: ((hpfar_ipa >> 12) << 4) as u32,
        }
    }
}

// ----- the VM every table case runs in -----------------------------------------------------

/// RAM, 1 GiB at a 1 GiB-aligned IPA and host address: 1 GiB blocks.
const RAM: u64 = 0x4000_0000;
const RAM_HOST: u64 = 0x1_0000_0000;
/// RAM, 4 MiB, 2 MiB-aligned on both sides but not 1 GiB: 2 MiB blocks.
const RAM2M: u64 = 0x8020_0000;
const RAM2M_HOST: u64 = 0x2_0000_0000;
/// RAM whose host address is 4 KiB off the IPA's 2 MiB alignment: pages only.
const SKEW: u64 = 0x9000_0000;
const SKEW_HOST: u64 = 0x2_1000_1000;
/// A read-only slot (ROM), 2 MiB.
const ROM: u64 = 0xa000_0000;
const ROM_HOST: u64 = 0x2_2000_0000;
/// A dirty-logging slot, 4 MiB.
const LOG: u64 = 0xb000_0000;
const LOG_HOST: u64 = 0x2_3000_0000;
/// A device, outside every slot.
const UART: u64 = 0x0900_0000;

const S_RAM: SlotId = SlotId(0);
const S_RAM2M: SlotId = SlotId(1);
const S_LOG: SlotId = SlotId(4);

fn vm<A: TestArch>(arena: &Arena, ipa_bits: u8) -> Stage2<A, &Arena> {
    let mut s2 = Stage2::<A, &Arena>::new(arena, ipa_bits, 1).unwrap();
    let slots = [
        (RAM, BLOCK_1G, RAM_HOST, false, false),
        (RAM2M, 2 * BLOCK_2M, RAM2M_HOST, false, false),
        (SKEW, 2 * BLOCK_2M, SKEW_HOST, false, false),
        (ROM, BLOCK_2M, ROM_HOST, true, false),
        (LOG, 2 * BLOCK_2M, LOG_HOST, false, true),
    ];
    for (i, (ipa, size, host, readonly, log_dirty)) in slots.into_iter().enumerate() {
        let id = s2
            .add_memslot(SlotDesc {
                ipa: Ipa(ipa),
                size,
                host: PhysAddr(host),
                flags: SlotFlags {
                    readonly,
                    log_dirty,
                    ..SlotFlags::default()
                },
            })
            .unwrap();
        assert_eq!(id, SlotId(i as u16));
    }
    s2
}

fn arena() -> Arena {
    Arena::new(PhysAddr(0x8000_0000), 4096)
}

/// What to do before the abort under test.
#[derive(Clone, Copy)]
enum Step {
    /// Take this abort (and expect the guest to be resumed).
    Abort(Syn, u64),
    /// Clear the access flag of the leaf at this IPA (`kvm_age_hva`).
    ClearAge(u64),
    /// Start dirty logging on a slot.
    StartLogging(SlotId),
    /// Stop dirty logging on a slot.
    StopLogging(SlotId),
    /// Map one RAM page with these permissions, as a caller might.
    MapPage(u64, u64, Perms),
}

/// What must hold after the abort under test.
#[derive(Clone, Copy)]
enum Post {
    /// A leaf of `level` with `perms` maps `ipa` to `pa`.
    Leaf {
        ipa: u64,
        pa: u64,
        level: u8,
        perms: Perms,
    },
    /// As `Leaf`, at the largest block level of the VM: level 1 when its walk starts at
    /// level 1 (40 bits), level 2 for a 32-bit VM (level-2 root, issue 17: no 1 GiB blocks).
    TopLeaf { ipa: u64, pa: u64, perms: Perms },
    /// Nothing maps `ipa`.
    Unmapped(u64),
    /// The page of `ipa` in `slot` is (true) or is not marked dirty.
    Dirty(SlotId, u64, bool),
    /// The access flag of the leaf at `ipa` is set.
    Aged(u64),
    /// No TLB invalidation was issued.
    NoTlb,
    /// Exactly the invalidation of these entries (IPA, level): by IPA then the combined
    /// stage-1+2 entries on ARMv8, the whole VMID once on ARMv7.
    Tlb(&'static [(u64, u8)]),
    /// Exactly this data-cache clean+invalidate to PoC (host address, length), and no other.
    DCache(u64, u64),
    /// Exactly this data-cache operation (host address, length), and no other.
    DCacheOp(CacheOp, u64, u64),
    /// No data-cache maintenance.
    NoDCache,
    /// The instruction cache was (true) or was not invalidated.
    ICache(bool),
}

#[derive(Clone, Copy)]
struct Env {
    v8: bool,
    ipa_bits: u8,
}

struct Case {
    name: &'static str,
    before: &'static [Step],
    syn: Syn,
    ipa: u64,
    expect: fn(&Env) -> AbortOutcome,
    post: &'static [Post],
}

fn inject(kind: AbortKind, ipa: u64, reason: InjectReason) -> AbortOutcome {
    AbortOutcome::Inject(Injection {
        kind,
        far: far_of(ipa),
        reason,
    })
}

fn mmio(ipa: u64, size: u8, write: bool, reg: u8, sse: bool, sf: bool) -> AbortOutcome {
    AbortOutcome::Mmio(MmioAccess {
        ipa: Ipa(ipa),
        size,
        write,
        reg,
        sign_extend: sse,
        sixty_four: sf,
        acquire_release: false,
        insn_len: 4,
    })
}

const CASES: &[Case] = &[
    Case {
        // The largest block the VM has: 1 GiB with a level-1 start, 2 MiB for a 32-bit VM,
        // whose walk starts at level 2 (issue 17).
        name: "read_translation_fault_in_aligned_ram_maps_largest_block_without_execute",
        before: &[],
        syn: load(trans(1)),
        ipa: RAM + 0x12_3456,
        expect: |e| AbortOutcome::Mapped {
            ipa: Ipa(RAM),
            size: if e.ipa_bits == 32 { BLOCK_2M } else { BLOCK_1G },
            perms: Perms::RW,
        },
        post: &[
            Post::TopLeaf {
                ipa: RAM + 0x12_3000,
                pa: RAM_HOST + 0x12_3000,
                perms: Perms::RW,
            },
            Post::NoTlb,
            // The guest's caches are on: nothing to clean.
            Post::NoDCache,
            Post::ICache(false),
        ],
    },
    Case {
        name: "write_translation_fault_in_2m_aligned_ram_maps_2m_block_cleaned_for_caches_off",
        before: &[],
        syn: Syn {
            caches_on: false,
            ..store(trans(1))
        },
        ipa: RAM2M + BLOCK_2M + 0x10,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(RAM2M + BLOCK_2M),
            size: BLOCK_2M,
            perms: Perms::RW,
        },
        post: &[
            Post::Leaf {
                ipa: RAM2M + BLOCK_2M,
                pa: RAM2M_HOST + BLOCK_2M,
                level: 2,
                perms: Perms::RW,
            },
            Post::Unmapped(RAM2M),
            Post::NoTlb,
            Post::DCache(RAM2M_HOST + BLOCK_2M, BLOCK_2M),
        ],
    },
    Case {
        name: "host_address_skewed_from_ipa_maps_a_page",
        before: &[],
        syn: Syn {
            caches_on: false,
            ..load(trans(1))
        },
        ipa: SKEW + 0x5008,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(SKEW + 0x5000),
            size: PAGE_SIZE,
            perms: Perms::RW,
        },
        post: &[
            Post::Leaf {
                ipa: SKEW + 0x5000,
                pa: SKEW_HOST + 0x5000,
                level: 3,
                perms: Perms::RW,
            },
            Post::Unmapped(SKEW + 0x4000),
            Post::NoTlb,
            Post::DCache(SKEW_HOST + 0x5000, PAGE_SIZE),
        ],
    },
    Case {
        name: "translation_fault_at_level_3_maps_a_page_beside_existing_ones",
        before: &[Abort(load(trans(1)), SKEW)],
        syn: load(trans(3)),
        ipa: SKEW + 0x1000,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(SKEW + 0x1000),
            size: PAGE_SIZE,
            perms: Perms::RW,
        },
        post: &[
            Post::Leaf {
                ipa: SKEW,
                pa: SKEW_HOST,
                level: 3,
                perms: Perms::RW,
            },
            Post::NoTlb,
        ],
    },
    Case {
        name:
            "instruction_fetch_with_caches_off_maps_rwx_cleaned_to_poc_and_invalidates_the_icache",
        before: &[],
        syn: Syn {
            caches_on: false,
            ..fetch(trans(1))
        },
        ipa: RAM2M + 0x8000,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(RAM2M),
            size: BLOCK_2M,
            perms: Perms::RWX,
        },
        post: &[Post::ICache(true), Post::DCache(RAM2M_HOST, BLOCK_2M)],
    },
    Case {
        name: "read_in_readonly_slot_maps_read_only_without_execute",
        before: &[],
        syn: load(trans(1)),
        ipa: ROM + 0x40,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(ROM),
            size: BLOCK_2M,
            perms: Perms::R,
        },
        post: &[Post::Leaf {
            ipa: ROM,
            pa: ROM_HOST,
            level: 2,
            perms: Perms::R,
        }],
    },
    Case {
        name: "write_to_unmapped_readonly_slot_is_mmio",
        before: &[],
        syn: store(trans(1)),
        ipa: ROM + 0x44,
        expect: |_| mmio(ROM + 0x44, 4, true, 5, false, false),
        post: &[Post::Unmapped(ROM), Post::NoTlb, Post::NoDCache],
    },
    Case {
        name: "write_permission_fault_on_readonly_slot_is_mmio",
        before: &[Abort(load(trans(1)), ROM)],
        syn: store(perm(2)),
        ipa: ROM + 0x1008,
        expect: |_| mmio(ROM + 0x1008, 4, true, 5, false, false),
        post: &[
            Post::Leaf {
                ipa: ROM,
                pa: ROM_HOST,
                level: 2,
                perms: Perms::R,
            },
            Post::NoTlb,
        ],
    },
    Case {
        name: "read_in_logging_slot_maps_a_readonly_page_and_logs_nothing",
        before: &[],
        syn: load(trans(1)),
        ipa: LOG + 0x1000,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(LOG + 0x1000),
            size: PAGE_SIZE,
            perms: Perms::R,
        },
        post: &[
            Post::Leaf {
                ipa: LOG + 0x1000,
                pa: LOG_HOST + 0x1000,
                level: 3,
                perms: Perms::R,
            },
            Post::Dirty(S_LOG, LOG + 0x1000, false),
            Post::NoTlb,
        ],
    },
    Case {
        name: "write_in_logging_slot_maps_a_writable_page_and_marks_it_dirty",
        before: &[],
        syn: store(trans(1)),
        ipa: LOG + 0x2000,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(LOG + 0x2000),
            size: PAGE_SIZE,
            perms: Perms::RW,
        },
        post: &[
            Post::Leaf {
                ipa: LOG + 0x2000,
                pa: LOG_HOST + 0x2000,
                level: 3,
                perms: Perms::RW,
            },
            Post::Dirty(S_LOG, LOG + 0x2000, true),
            Post::Dirty(S_LOG, LOG + 0x3000, false),
        ],
    },
    Case {
        name: "write_permission_fault_on_logged_page_marks_dirty_and_makes_writable",
        before: &[Abort(load(trans(1)), LOG + 0x3000)],
        syn: store(perm(3)),
        ipa: LOG + 0x3010,
        expect: |_| AbortOutcome::Dirtied {
            ipa: Ipa(LOG + 0x3000),
            slot: S_LOG,
            dissolved: false,
        },
        post: &[
            Post::Leaf {
                ipa: LOG + 0x3000,
                pa: LOG_HOST + 0x3000,
                level: 3,
                perms: Perms::RW,
            },
            Post::Dirty(S_LOG, LOG + 0x3000, true),
            Post::Tlb(&[(LOG + 0x3000, 3)]),
            Post::NoDCache,
        ],
    },
    Case {
        name: "write_to_block_of_logging_slot_dissolves_it_and_maps_the_page_writable",
        before: &[Abort(load(trans(1)), RAM2M), Step::StartLogging(S_RAM2M)],
        syn: store(perm(2)),
        ipa: RAM2M + 0x5000,
        expect: |_| AbortOutcome::Dirtied {
            ipa: Ipa(RAM2M + 0x5000),
            slot: S_RAM2M,
            dissolved: true,
        },
        post: &[
            Post::Leaf {
                ipa: RAM2M + 0x5000,
                pa: RAM2M_HOST + 0x5000,
                level: 3,
                perms: Perms::RW,
            },
            Post::Unmapped(RAM2M),
            Post::Dirty(S_RAM2M, RAM2M + 0x5000, true),
            // Dissolving marks the whole block dirty (`stage2_dissolve_pmd`).
            Post::Dirty(S_RAM2M, RAM2M, true),
            Post::Dirty(S_RAM2M, RAM2M + BLOCK_2M, false),
            // The block, then the level-2 table it leaves empty.
            Post::Tlb(&[(RAM2M, 2), (0x8000_0000, 1)]),
        ],
    },
    Case {
        name: "write_after_logging_stopped_gives_the_block_write_permission_back",
        before: &[
            Abort(load(trans(1)), RAM2M),
            Step::StartLogging(S_RAM2M),
            Step::StopLogging(S_RAM2M),
        ],
        syn: store(perm(2)),
        ipa: RAM2M + 0x7000,
        expect: |_| AbortOutcome::MadeWritable {
            ipa: Ipa(RAM2M + 0x7000),
        },
        post: &[
            Post::Leaf {
                ipa: RAM2M,
                pa: RAM2M_HOST,
                level: 2,
                perms: Perms::RW,
            },
            Post::Tlb(&[(RAM2M, 2)]),
        ],
    },
    Case {
        name: "access_flag_fault_sets_the_flag",
        before: &[Abort(load(trans(1)), RAM2M), Step::ClearAge(RAM2M)],
        syn: load(af(2)),
        ipa: RAM2M + 0x3000,
        expect: |_| AbortOutcome::AccessFlagSet {
            ipa: Ipa(RAM2M + 0x3000),
        },
        post: &[Post::Aged(RAM2M), Post::Tlb(&[(RAM2M, 2)]), Post::NoDCache],
    },
    Case {
        name: "access_flag_fault_on_unmapped_ram_is_spurious",
        before: &[],
        syn: load(af(3)),
        ipa: RAM + 0x3000,
        expect: |_| AbortOutcome::Spurious,
        post: &[Post::Unmapped(RAM), Post::NoTlb],
    },
    Case {
        name: "translation_fault_on_mapped_ram_is_spurious",
        before: &[Abort(load(trans(1)), RAM2M)],
        syn: load(trans(1)),
        ipa: RAM2M + 0x3000,
        expect: |_| AbortOutcome::Spurious,
        post: &[Post::NoTlb, Post::NoDCache],
    },
    Case {
        name: "write_permission_fault_on_writable_page_is_spurious",
        before: &[Abort(store(trans(1)), LOG)],
        syn: store(perm(3)),
        ipa: LOG,
        expect: |_| AbortOutcome::Spurious,
        post: &[Post::NoTlb],
    },
    Case {
        name: "exec_permission_fault_on_ram_page_cleans_to_pou_invalidates_icache_and_adds_x",
        before: &[Step::MapPage(SKEW, SKEW_HOST, Perms::RW)],
        syn: fetch(perm(3)),
        ipa: SKEW + 0x10,
        expect: |_| AbortOutcome::ExecGranted {
            ipa: Ipa(SKEW),
            size: PAGE_SIZE,
        },
        post: &[
            Post::Leaf {
                ipa: SKEW,
                pa: SKEW_HOST,
                level: 3,
                perms: Perms::RWX,
            },
            Post::DCacheOp(CacheOp::CleanToPou, SKEW_HOST, PAGE_SIZE),
            Post::ICache(true),
            // A permission-only change: the old entry is invalidated, nothing is broken.
            Post::Tlb(&[(SKEW, 3)]),
        ],
    },
    Case {
        name: "data_fault_then_exec_fault_on_a_block_grants_x_to_the_block",
        before: &[Abort(load(trans(1)), RAM2M)],
        syn: fetch(perm(2)),
        ipa: RAM2M + 0x4_0000,
        expect: |_| AbortOutcome::ExecGranted {
            ipa: Ipa(RAM2M),
            size: BLOCK_2M,
        },
        post: &[
            Post::Leaf {
                ipa: RAM2M,
                pa: RAM2M_HOST,
                level: 2,
                perms: Perms::RWX,
            },
            Post::DCacheOp(CacheOp::CleanToPou, RAM2M_HOST, BLOCK_2M),
            Post::ICache(true),
            Post::Tlb(&[(RAM2M, 2)]),
        ],
    },
    Case {
        name: "instruction_fetch_with_caches_on_maps_rwx_cleaned_to_pou_and_invalidates_the_icache",
        before: &[],
        syn: fetch(trans(1)),
        ipa: SKEW + 0x3008,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(SKEW + 0x3000),
            size: PAGE_SIZE,
            perms: Perms::RWX,
        },
        post: &[
            Post::DCacheOp(CacheOp::CleanToPou, SKEW_HOST + 0x3000, PAGE_SIZE),
            Post::ICache(true),
            Post::NoTlb,
        ],
    },
    Case {
        name: "instruction_fetch_in_a_logging_slot_maps_read_execute_and_logged",
        before: &[],
        syn: fetch(trans(1)),
        ipa: LOG + 0x5000,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(LOG + 0x5000),
            size: PAGE_SIZE,
            perms: Perms::RX,
        },
        post: &[Post::ICache(true), Post::Dirty(S_LOG, LOG + 0x5000, false)],
    },
    Case {
        name: "exec_permission_fault_on_executable_page_is_spurious",
        before: &[Abort(fetch(trans(1)), SKEW)],
        syn: fetch(perm(3)),
        ipa: SKEW + 0x20,
        expect: |_| AbortOutcome::Spurious,
        post: &[Post::NoTlb, Post::NoDCache, Post::ICache(false)],
    },
    Case {
        name: "exec_permission_fault_on_a_page_no_longer_mapped_resumes",
        before: &[],
        syn: fetch(perm(3)),
        ipa: SKEW + 0x6000,
        expect: |_| AbortOutcome::Spurious,
        post: &[Post::Unmapped(SKEW + 0x6000), Post::NoTlb, Post::NoDCache],
    },
    Case {
        name: "read_permission_fault_on_a_page_no_longer_mapped_resumes",
        before: &[],
        syn: load(perm(3)),
        ipa: SKEW + 0x7000,
        expect: |_| AbortOutcome::Spurious,
        post: &[Post::Unmapped(SKEW + 0x7000), Post::NoTlb],
    },
    Case {
        name: "stage1_walk_permission_fault_of_an_instruction_fetch_is_a_write",
        // The guest's table page is mapped read-only by logging; the walker (which may set
        // access and dirty flags) faults on it during an instruction fetch: a write for
        // stage 2 (`kvm_is_write_fault` checks S1PTW before the abort kind).
        before: &[Abort(load(trans(1)), LOG + 0x6000)],
        syn: Syn {
            s1ptw: true,
            ..fetch(perm(3))
        },
        ipa: LOG + 0x6000,
        expect: |_| AbortOutcome::Dirtied {
            ipa: Ipa(LOG + 0x6000),
            slot: S_LOG,
            dissolved: false,
        },
        post: &[
            Post::Leaf {
                ipa: LOG + 0x6000,
                pa: LOG_HOST + 0x6000,
                level: 3,
                perms: Perms::RW,
            },
            Post::Dirty(S_LOG, LOG + 0x6000, true),
        ],
    },
    Case {
        name: "word_load_outside_every_slot_is_mmio",
        before: &[],
        syn: load(trans(1)),
        ipa: UART + 0x18,
        expect: |_| mmio(UART + 0x18, 4, false, 5, false, false),
        post: &[Post::Unmapped(UART), Post::NoTlb, Post::NoDCache],
    },
    Case {
        name: "sign_extending_halfword_load_into_64_bit_register_is_mmio",
        before: &[],
        syn: Syn {
            sas: 1,
            sse: true,
            sf: true,
            srt: 12,
            ..LOAD
        },
        ipa: UART + 0x22,
        // SF exists on ARMv8 only; the ARMv7 builder has no field for it.
        expect: |e| mmio(UART + 0x22, 2, false, 12, true, e.v8),
        post: &[Post::NoTlb],
    },
    Case {
        name: "byte_store_outside_every_slot_is_mmio",
        before: &[],
        syn: Syn {
            sas: 0,
            srt: 3,
            ..store(trans(2))
        },
        ipa: UART,
        expect: |_| mmio(UART, 1, true, 3, false, false),
        post: &[Post::NoTlb],
    },
    Case {
        name: "mmio_without_isv_injects_a_data_abort",
        before: &[],
        syn: Syn {
            isv: false,
            ..store(trans(1))
        },
        ipa: UART + 4,
        expect: |_| inject(AbortKind::Data, UART + 4, InjectReason::NoSyndrome),
        post: &[Post::NoTlb],
    },
    Case {
        name: "cache_maintenance_outside_ram_skips_the_instruction",
        before: &[],
        syn: Syn {
            cm: true,
            isv: false,
            ..store(trans(1))
        },
        ipa: UART + 0x40,
        expect: |_| AbortOutcome::SkipInstruction { len: 4 },
        post: &[Post::NoTlb],
    },
    Case {
        name: "thumb_cache_maintenance_skips_two_bytes",
        before: &[],
        syn: Syn {
            cm: true,
            il: false,
            ..store(trans(1))
        },
        ipa: UART + 0x40,
        expect: |_| AbortOutcome::SkipInstruction { len: 2 },
        post: &[],
    },
    Case {
        name: "instruction_fetch_outside_ram_injects_a_prefetch_abort",
        before: &[],
        syn: fetch(trans(1)),
        ipa: UART + 0x100,
        expect: |_| {
            inject(
                AbortKind::Instruction,
                UART + 0x100,
                InjectReason::InstructionFetchFromIo,
            )
        },
        post: &[Post::NoTlb],
    },
    Case {
        name: "stage1_walk_outside_ram_injects",
        before: &[],
        syn: Syn {
            s1ptw: true,
            ..load(trans(1))
        },
        ipa: UART + 0x200,
        expect: |_| inject(AbortKind::Data, UART + 0x200, InjectReason::WalkOutsideRam),
        post: &[Post::NoTlb],
    },
    Case {
        name: "stage1_walk_translation_fault_in_readonly_slot_maps_it_as_a_read",
        before: &[],
        syn: Syn {
            s1ptw: true,
            ..load(trans(1))
        },
        ipa: ROM + 0x1000,
        expect: |_| AbortOutcome::Mapped {
            ipa: Ipa(ROM),
            size: BLOCK_2M,
            perms: Perms::R,
        },
        post: &[],
    },
    Case {
        name: "synchronous_external_abort_injects",
        before: &[],
        syn: Syn {
            ea: true,
            ..load(SEA)
        },
        ipa: RAM + 0x1000,
        expect: |_| {
            inject(
                AbortKind::Data,
                RAM + 0x1000,
                InjectReason::ExternalAbort(FaultStatus::SyncExternal),
            )
        },
        post: &[Post::Unmapped(RAM), Post::NoTlb, Post::NoDCache],
    },
    Case {
        name: "external_abort_on_table_walk_injects",
        before: &[],
        syn: fetch(SEA_WALK_L2),
        ipa: RAM,
        expect: |_| {
            inject(
                AbortKind::Instruction,
                RAM,
                InjectReason::ExternalAbort(FaultStatus::SyncExternalOnWalk { level: 2 }),
            )
        },
        post: &[Post::Unmapped(RAM)],
    },
    Case {
        name: "alignment_fault_is_unsupported_and_injects",
        before: &[],
        syn: load(ALIGNMENT),
        ipa: RAM + 0x1001,
        expect: |_| {
            inject(
                AbortKind::Data,
                RAM + 0x1001,
                InjectReason::UnsupportedFault(FaultStatus::Alignment),
            )
        },
        post: &[Post::Unmapped(RAM)],
    },
    Case {
        name: "ipa_at_4g_injects_with_32_bit_ipa_and_is_mmio_with_40",
        before: &[],
        syn: load(trans(0)),
        ipa: 0x1_0000_0010,
        expect: |e| {
            if e.ipa_bits == 32 {
                inject(
                    AbortKind::Data,
                    0x1_0000_0010,
                    InjectReason::OutsideIpaSpace,
                )
            } else {
                mmio(0x1_0000_0010, 4, false, 5, false, false)
            }
        },
        post: &[Post::NoTlb],
    },
];

use Step::Abort;

fn check_post<A: TestArch>(s2: &Stage2<A, &Arena>, p: &Post, name: &str) {
    let records = log::records();
    let dcache: Vec<(CacheOp, u64, u64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::DCache { op, va, len } => Some((*op, va.0, *len)),
            _ => None,
        })
        .collect();
    match *p {
        Post::Leaf {
            ipa,
            pa,
            level,
            perms,
        } => {
            let t = s2
                .translate(Ipa(ipa))
                .unwrap_or_else(|| panic!("{name}: unmapped"));
            assert_eq!(
                (t.pa, t.level, t.attrs.perms),
                (PhysAddr(pa), level, perms),
                "{name}"
            );
            assert!(t.attrs.accessed, "{name}");
        }
        Post::TopLeaf { ipa, pa, perms } => {
            let level = s2.geometry().start_level().max(1);
            let t = s2
                .translate(Ipa(ipa))
                .unwrap_or_else(|| panic!("{name}: unmapped"));
            assert_eq!(
                (t.pa, t.level, t.attrs.perms),
                (PhysAddr(pa), level, perms),
                "{name}"
            );
            assert!(t.attrs.accessed, "{name}");
        }
        Post::Unmapped(ipa) => assert_eq!(s2.translate(Ipa(ipa)), None, "{name}"),
        Post::Dirty(slot, ipa, dirty) => {
            let s = s2.slot(slot).unwrap();
            let idx = s.gfn_offset(Ipa(ipa)).unwrap();
            assert_eq!(s2.is_dirty(slot, idx).unwrap(), dirty, "{name}");
        }
        Post::Aged(ipa) => assert!(s2.test_age(Ipa(ipa)), "{name}"),
        Post::NoTlb => assert_eq!(log::tlb_ops(), [], "{name}"),
        Post::Tlb(entries) => {
            let vttbr = s2.vttbr();
            // An entry of a level above the VM's root does not exist: a 32-bit VM (level-2
            // root, issue 17) frees no level-2 table, so has no level-1 entry to invalidate.
            let start = s2.geometry().start_level();
            let entries: Vec<(u64, u8)> = entries
                .iter()
                .copied()
                .filter(|&(_, level)| level >= start)
                .collect();
            let want = if A::V8 {
                let mut v: Vec<TlbOp> = entries
                    .iter()
                    .map(|&(ipa, level)| TlbOp::S2Ipa {
                        vttbr,
                        ipa: Ipa(ipa),
                        level,
                    })
                    .collect();
                v.push(TlbOp::S2CombinedForVmid { vttbr });
                v
            } else {
                vec![TlbOp::S2Vmid { vttbr }]
            };
            assert_eq!(log::tlb_ops(), want, "{name}");
        }
        // Guest memory is reached through the arena's lending: VA = GUEST_VA_OFFSET | PA.
        Post::DCache(host, len) => assert_eq!(
            dcache,
            [(CacheOp::CleanInvalidate, GUEST_VA_OFFSET | host, len)],
            "{name}"
        ),
        Post::DCacheOp(op, host, len) => {
            assert_eq!(dcache, [(op, GUEST_VA_OFFSET | host, len)], "{name}")
        }
        Post::NoDCache => assert_eq!(dcache, [], "{name}"),
        Post::ICache(yes) => assert_eq!(
            records
                .iter()
                .any(|r| matches!(r, Record::ICacheInvalidateAll)),
            yes,
            "{name}"
        ),
    }
}

fn run_cases<A: TestArch>(ipa_bits: u8) {
    let env = Env {
        v8: A::V8,
        ipa_bits,
    };
    for c in CASES {
        let arena = arena();
        let mut cache = PageCache::<8>::new();
        {
            let mut s2 = vm::<A>(&arena, ipa_bits);
            for step in c.before {
                match *step {
                    Step::Abort(syn, ipa) => {
                        cache.top_up(&arena, s2.fault_pages()).unwrap();
                        let o = take(&mut s2, &mut cache, &syn, ipa);
                        assert!(o.unwrap().resumes_guest(), "{}: setup abort", c.name);
                    }
                    Step::ClearAge(ipa) => assert!(s2.test_and_clear_age(Ipa(ipa)).unwrap()),
                    Step::StartLogging(id) => s2.enable_dirty_logging(id).unwrap(),
                    Step::StopLogging(id) => s2.disable_dirty_logging(id).unwrap(),
                    Step::MapPage(ipa, pa, perms) => s2
                        .map_ram(
                            Ipa(ipa),
                            PhysAddr(pa),
                            PAGE_SIZE,
                            perms,
                            pt_hyp::BlockSize::Page,
                        )
                        .unwrap(),
                }
            }
            cache.top_up(&arena, s2.fault_pages()).unwrap();
            log::clear();
            let calls = arena.allocation_calls();
            let got = take(&mut s2, &mut cache, &c.syn, c.ipa)
                .unwrap_or_else(|e| panic!("{} ({}, {ipa_bits}): {e}", c.name, A::NAME));
            assert_eq!(
                got,
                (c.expect)(&env),
                "{} ({}, {ipa_bits}-bit IPA)",
                c.name,
                A::NAME
            );
            assert_eq!(
                arena.allocation_calls(),
                calls,
                "{}: the fault path called the allocator",
                c.name
            );
            for p in c.post {
                check_post(&s2, p, c.name);
            }
        }
        cache.release(&arena);
        assert_eq!(arena.live_pages(), 0, "{}: leaked pages", c.name);
        assert_eq!(log::violations(), Vec::<String>::new(), "{}", c.name);
    }
}

#[test]
fn every_outcome_armv7_32_bit_ipa() {
    run_cases::<Armv7>(32);
}

#[test]
fn every_outcome_armv7_40_bit_ipa() {
    run_cases::<Armv7>(40);
}

#[test]
fn every_outcome_armv8_32_bit_ipa() {
    run_cases::<Armv8>(32);
}

#[test]
fn every_outcome_armv8_40_bit_ipa() {
    run_cases::<Armv8>(40);
}

// ----- cache exhaustion ----------------------------------------------------------------------

fn empty_cache_leaves_tree_unchanged<A: TestArch>(ipa_bits: u8) {
    let arena = arena();
    let mut s2 = vm::<A>(&arena, ipa_bits);
    let mut cache = PageCache::<8>::new();
    log::clear();
    // A 2 MiB block in the ROM slot needs one level-2 table when the walk starts at level 1.
    // A 32-bit VM's root is the level-2 table (issue 17): the block needs no table and maps
    // from an empty cache.
    if s2.geometry().start_level() == 1 {
        let r = s2.handle_guest_abort(&mut cache, &A::regs(&load(trans(1)), ROM));
        assert_eq!(
            r,
            Err(Error::CacheExhausted {
                needed: 1,
                available: 0
            })
        );
        assert_eq!(s2.translate(Ipa(ROM)), None);
        assert_eq!(log::writes(), 0);
        assert!(log::records()
            .iter()
            .all(|r| !matches!(r, Record::DCache { .. })));
        // Topped up, the retry maps; the raw-register entry knows nothing of the guest's caches
        // and cleans the new block.
        cache.top_up(&arena, s2.fault_pages()).unwrap();
    }
    let r = s2.handle_guest_abort(&mut cache, &A::regs(&load(trans(1)), ROM));
    assert!(matches!(r, Ok(AbortOutcome::Mapped { size: BLOCK_2M, .. })));
    let dcache: Vec<Record> = log::records()
        .into_iter()
        .filter(|r| matches!(r, Record::DCache { .. }))
        .collect();
    assert_eq!(
        dcache,
        [Record::DCache {
            op: CacheOp::CleanInvalidate,
            va: pt_core::VirtAddr(GUEST_VA_OFFSET | ROM_HOST),
            len: BLOCK_2M
        }]
    );
    drop(s2);
    cache.release(&arena);
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn empty_cache_is_cache_exhausted_and_tree_unchanged() {
    empty_cache_leaves_tree_unchanged::<Armv7>(32);
    empty_cache_leaves_tree_unchanged::<Armv7>(40);
    empty_cache_leaves_tree_unchanged::<Armv8>(32);
    empty_cache_leaves_tree_unchanged::<Armv8>(40);
}

fn empty_cache_keeps_logged_block<A: TestArch>(ipa_bits: u8) {
    let arena = arena();
    let mut s2 = vm::<A>(&arena, ipa_bits);
    let mut cache = PageCache::<8>::new();
    cache.top_up(&arena, s2.fault_pages()).unwrap();
    let o = take(&mut s2, &mut cache, &load(trans(1)), RAM2M);
    assert!(o.unwrap().resumes_guest());
    s2.enable_dirty_logging(S_RAM2M).unwrap();
    // One page is what the block's own level would suggest, but with a level-1 start
    // dissolving frees the level-2 table the block sat alone in, and needs two. A 32-bit VM's
    // root is the level-2 table (issue 17): one page; give one fewer than needed.
    let needed = if s2.geometry().start_level() == 1 {
        2
    } else {
        1
    };
    cache.release(&arena);
    cache.top_up(&arena, needed - 1).unwrap();
    let before = s2.translate(Ipa(RAM2M)).unwrap();
    log::clear();
    let r = take(&mut s2, &mut cache, &store(perm(2)), RAM2M + 0x1000);
    assert_eq!(
        r,
        Err(Error::CacheExhausted {
            needed,
            available: needed - 1
        })
    );
    assert_eq!(s2.translate(Ipa(RAM2M)), Some(before));
    assert!(!s2.is_dirty(S_RAM2M, 1).unwrap());
    assert_eq!(log::writes(), 0);
    assert_eq!(log::tlb_ops(), []);
    drop(s2);
    cache.release(&arena);
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn short_cache_keeps_a_logged_block_and_its_bitmap() {
    empty_cache_keeps_logged_block::<Armv7>(32);
    empty_cache_keeps_logged_block::<Armv7>(40);
    empty_cache_keeps_logged_block::<Armv8>(32);
    empty_cache_keeps_logged_block::<Armv8>(40);
}

// ----- the IPA of a permission fault -----------------------------------------------------------

fn stale_hpfar_is_not_used_for_a_permission_fault<A: TestArch>(ipa_bits: u8) {
    // Dirty logging: two read-only logged pages. The guest writes page B; HPFAR (UNKNOWN for
    // a permission fault) still holds page A from an earlier fault. The IPA must come from the
    // guest's stage 1 (AT of FAR): B is made writable and dirty, A is untouched. With HPFAR,
    // A would be made writable and B would fault for ever.
    let arena = arena();
    let mut s2 = vm::<A>(&arena, ipa_bits);
    let mut cache = PageCache::<8>::new();
    let (a, b) = (LOG + 0x1000, LOG + 0x2000);
    for ipa in [a, b] {
        cache.top_up(&arena, s2.fault_pages()).unwrap();
        take(&mut s2, &mut cache, &load(trans(1)), ipa).unwrap();
    }
    log::clear();
    log::queue_par(par_of(b));
    let regs = A::regs_with_hpfar(&store(perm(3)), b, a);
    let o = s2.handle_guest_abort(&mut cache, &regs).unwrap();
    assert_eq!(
        o,
        AbortOutcome::Dirtied {
            ipa: Ipa(b),
            slot: S_LOG,
            dissolved: false
        }
    );
    assert!(s2.translate(Ipa(b)).unwrap().attrs.perms.write());
    assert!(!s2.translate(Ipa(a)).unwrap().attrs.perms.write());
    let s = s2.slot(S_LOG).unwrap();
    let (ia, ib) = (s.gfn_offset(Ipa(a)).unwrap(), s.gfn_offset(Ipa(b)).unwrap());
    assert_eq!(s2.is_dirty(S_LOG, ib), Ok(true));
    assert_eq!(s2.is_dirty(S_LOG, ia), Ok(false));
    // The translation instruction ran with FAR as its operand.
    let at = if A::V8 { "at s1e1r" } else { "mcr ats1cpr" };
    assert!(log::records().contains(&Record::Insn {
        mnemonic: at,
        operand: far_of(b)
    }));
    drop(s2);
    cache.release(&arena);
}

#[test]
fn permission_fault_ipa_comes_from_at_of_far_not_from_a_stale_hpfar() {
    stale_hpfar_is_not_used_for_a_permission_fault::<Armv7>(32);
    stale_hpfar_is_not_used_for_a_permission_fault::<Armv7>(40);
    stale_hpfar_is_not_used_for_a_permission_fault::<Armv8>(32);
    stale_hpfar_is_not_used_for_a_permission_fault::<Armv8>(40);
}

fn failed_far_translation_resumes<A: TestArch>(ipa_bits: u8) {
    let arena = arena();
    let mut s2 = vm::<A>(&arena, ipa_bits);
    let mut cache = PageCache::<8>::new();
    cache.top_up(&arena, s2.fault_pages()).unwrap();
    take(&mut s2, &mut cache, &load(trans(1)), LOG + 0x3000).unwrap();
    log::clear();
    // No PAR queued: the guest's stage 1 no longer maps FAR (PAR.F = 1).
    let regs = A::regs(&store(perm(3)), LOG + 0x3000);
    assert_eq!(
        s2.handle_guest_abort(&mut cache, &regs),
        Ok(AbortOutcome::FarUntranslated)
    );
    assert!(AbortOutcome::FarUntranslated.resumes_guest());
    assert!(!s2.translate(Ipa(LOG + 0x3000)).unwrap().attrs.perms.write());
    assert_eq!(log::writes(), 0);
    drop(s2);
    cache.release(&arena);
}

#[test]
fn permission_fault_whose_far_no_longer_translates_resumes_the_guest() {
    failed_far_translation_resumes::<Armv7>(40);
    failed_far_translation_resumes::<Armv8>(40);
}

fn translation_fault_uses_hpfar<A: TestArch>() {
    let arena = arena();
    let mut s2 = vm::<A>(&arena, 40);
    let mut cache = PageCache::<8>::new();
    cache.top_up(&arena, s2.fault_pages()).unwrap();
    log::clear();
    take(&mut s2, &mut cache, &store(trans(1)), SKEW + 0x2000).unwrap();
    assert!(s2.translate(Ipa(SKEW + 0x2000)).is_some());
    let at = if A::V8 { "at s1e1r" } else { "mcr ats1cpr" };
    assert!(!log::records()
        .iter()
        .any(|r| matches!(r, Record::Insn { mnemonic, .. } if *mnemonic == at)));
    // The decode marks which faults carry a valid HPFAR (ARM ARM: translation, access flag,
    // address size, and any fault on a stage-1 walk).
    let dec = |s: &Syn| A::decode_abort(&A::regs(s, RAM)).unwrap().ipa_valid;
    assert!(dec(&load(trans(2))));
    assert!(dec(&load(af(3))));
    assert!(dec(&load(0b00_0001)));
    assert!(!dec(&store(perm(3))));
    assert!(!dec(&fetch(perm(2))));
    assert!(dec(&Syn {
        s1ptw: true,
        ..store(perm(3))
    }));
    drop(s2);
    cache.release(&arena);
}

#[test]
fn translation_and_walk_faults_take_the_ipa_from_hpfar_without_an_address_translation() {
    translation_fault_uses_hpfar::<Armv7>();
    translation_fault_uses_hpfar::<Armv8>();
}

fn noexec_slot_refuses_fetches<A: TestArch>() {
    let arena = arena();
    let mut s2 = Stage2::<A, &Arena>::new(&arena, 40, 1).unwrap();
    s2.add_memslot(SlotDesc {
        ipa: Ipa(RAM),
        size: BLOCK_2M,
        host: PhysAddr(RAM_HOST),
        flags: SlotFlags {
            noexec: true,
            ..SlotFlags::default()
        },
    })
    .unwrap();
    let mut cache = PageCache::<8>::new();
    cache.top_up(&arena, s2.fault_pages()).unwrap();
    assert_eq!(
        take(&mut s2, &mut cache, &fetch(trans(1)), RAM + 0x40),
        Ok(inject(
            AbortKind::Instruction,
            RAM + 0x40,
            InjectReason::ExecuteNever
        ))
    );
    take(&mut s2, &mut cache, &load(trans(1)), RAM + 0x40).unwrap();
    assert_eq!(
        take(&mut s2, &mut cache, &fetch(perm(2)), RAM + 0x40),
        Ok(inject(
            AbortKind::Instruction,
            RAM + 0x40,
            InjectReason::ExecuteNever
        ))
    );
    assert!(!s2.translate(Ipa(RAM)).unwrap().attrs.perms.exec());
    drop(s2);
    cache.release(&arena);
}

#[test]
fn instruction_fetch_from_a_noexec_slot_is_refused() {
    noexec_slot_refuses_fetches::<Armv7>();
    noexec_slot_refuses_fetches::<Armv8>();
}

// ----- undecodable syndromes -------------------------------------------------------------------

fn not_an_abort_is_an_error<A: TestArch>() {
    let arena = arena();
    let mut s2 = vm::<A>(&arena, 40);
    let mut cache = PageCache::<8>::new();
    for ec in [
        0x16, /*HVC*/
        0x25, /*data abort from EL2*/
        0x21, 0x00,
    ] {
        let syn = Syn { ec, ..LOAD };
        let r = s2.handle_guest_abort(&mut cache, &A::regs(&syn, RAM));
        assert_eq!(r, Err(Error::NotGuestAbort { ec: ec as u8 }));
    }
    assert_eq!(s2.translate(Ipa(RAM)), None);
}

#[test]
fn a_syndrome_that_is_not_a_guest_abort_is_an_error_not_an_injection() {
    not_an_abort_is_an_error::<Armv7>();
    not_an_abort_is_an_error::<Armv8>();
}

// ----- decode, from literal register values ------------------------------------------------------

#[test]
fn armv8_data_abort_decodes_every_field() {
    let esr = (0x24 << 26) /*EC*/
        | (1 << 25) /*IL*/
        | (1 << 24) /*ISV*/
        | (2 << 22) /*SAS=word*/
        | (1 << 21) /*SSE*/
        | (30 << 16) /*SRT*/
        | (1 << 15) /*SF*/
        | (1 << 14) /*AR*/
        | (1 << 10) /*FnV*/
        | (1 << 9) /*EA*/
        | (1 << 8) /*CM*/
        | (1 << 7) /*S1PTW*/
        | (1 << 6) /*WnR*/
        | 0b001101 /*permission L1*/;
    let a = decode_armv8(esr, 0xffff_0000_dead_beef, 0x0000_0fff_ffff_fff0).unwrap();
    assert_eq!(a.kind, AbortKind::Data);
    assert!(a.il32 && a.isv && a.sse && a.sf && a.ar && a.fnv && a.ea && a.cm && a.s1ptw);
    assert!(a.wnr);
    assert_eq!((a.sas, a.access_size(), a.srt), (2, 4, 30));
    assert_eq!(a.fsc, 0b001101);
    assert_eq!(a.status, FaultStatus::Permission { level: 1 });
    // FIPA[43:4] = IPA[51:12]; offset from FAR_EL2.
    assert_eq!(a.ipa, Ipa(0x000f_ffff_ffff_feef));
    assert_eq!(a.far, 0xffff_0000_dead_beef);
}

#[test]
fn armv8_hpfar_ignores_ns_and_low_bits() {
    let esr = (0x24 << 26) | (1 << 25) | 0b000111;
    let hpfar = (1 << 63) /*NS*/ | (0x4_0123 << 4) | 0xf;
    let a = decode_armv8(esr, 0x123, hpfar).unwrap();
    assert_eq!(a.ipa, Ipa(0x4012_3123));
    assert_eq!(a.status, FaultStatus::Translation { level: 3 });
}

#[test]
fn armv8_instruction_abort_has_no_access_fields() {
    // Data-abort-only bits set in an instruction abort's ISS are not reported.
    let esr = (0x20 << 26) | (1 << 25) | (1 << 24) | (3 << 22) | (7 << 16) | (1 << 6) | 0b000101;
    let a = decode_armv8(esr, 0x8000_1234, 0x8_0000 << 4).unwrap();
    assert_eq!(a.kind, AbortKind::Instruction);
    assert!(!a.isv && !a.wnr && !a.is_write());
    assert_eq!((a.sas, a.srt), (0, 0));
    assert_eq!(a.ipa, Ipa(0x8000_0234));
}

#[test]
fn armv7_data_abort_uses_hdfar_and_a_4_bit_srt() {
    let hsr: u32 = (0x24 << 26) /*EC*/
        | (1 << 25) /*IL*/
        | (1 << 24) /*ISV*/
        | (1 << 22) /*SAS=halfword*/
        | (1 << 21) /*SSE*/
        | (1 << 20) /*reserved, not SRT*/
        | (14 << 16) /*SRT*/
        | (1 << 15) /*reserved (SF on ARMv8)*/
        | (1 << 14) /*reserved (AR on ARMv8)*/
        | (1 << 6) /*WnR*/
        | 0b001010 /*access flag L2*/;
    let a = decode_armv7(hsr, 0xc000_0abc, 0xdead_0000, 0xffff_fff0).unwrap();
    assert_eq!(a.kind, AbortKind::Data);
    assert_eq!((a.srt, a.access_size()), (14, 2));
    assert!(a.sse && a.wnr && a.isv && a.il32);
    assert!(!a.sf && !a.ar && !a.fnv);
    assert_eq!(a.status, FaultStatus::AccessFlag { level: 2 });
    // HPFAR[31:4] = IPA[39:12].
    assert_eq!(a.ipa, Ipa(0xff_ffff_fabc));
    assert_eq!(a.far, 0xc000_0abc);
}

#[test]
fn armv7_prefetch_abort_uses_hifar() {
    let hsr: u32 = (0x20 << 26) | (1 << 25) | 0b000110 /*translation L2*/;
    let a = decode_armv7(hsr, 0xdead_0000, 0x8000_0f00, 0x4_0000 << 4).unwrap();
    assert_eq!(a.kind, AbortKind::Instruction);
    assert_eq!(a.far, 0x8000_0f00);
    assert_eq!(a.ipa, Ipa(0x4000_0f00));
    assert_eq!(a.status, FaultStatus::Translation { level: 2 });
}

#[test]
fn guest_caches_are_on_only_with_sctlr_m_and_c() {
    let esr = (0x24 << 26) | (1 << 25) | 0b000101;
    for (sctlr, on) in [(0b101, true), (0b001, false), (0b100, false), (0, false)] {
        let v8 = decode_armv8(esr, 0, 0).unwrap();
        let v7 = decode_armv7(esr as u32, 0, 0, 0).unwrap();
        assert!(
            !v8.guest_caches_on && !v7.guest_caches_on,
            "decode assumes caches off"
        );
        assert_eq!(v8.with_guest_sctlr(sctlr).guest_caches_on, on);
        assert_eq!(v7.with_guest_sctlr(sctlr).guest_caches_on, on);
    }
}

#[test]
fn other_exception_classes_are_rejected() {
    assert_eq!(
        decode_armv8(0x16 << 26, 0, 0),
        Err(DecodeError::NotGuestAbort { ec: 0x16 })
    );
    assert_eq!(
        decode_armv8(0x25 << 26, 0, 0),
        Err(DecodeError::NotGuestAbort { ec: 0x25 })
    );
    assert_eq!(
        decode_armv7(0x21 << 26, 0, 0, 0),
        Err(DecodeError::NotGuestAbort { ec: 0x21 })
    );
}

#[test]
fn fault_status_codes_decode() {
    let table = [
        (0b000000, FaultStatus::AddressSize { level: 0 }),
        (0b000111, FaultStatus::Translation { level: 3 }),
        (0b001001, FaultStatus::AccessFlag { level: 1 }),
        (0b001110, FaultStatus::Permission { level: 2 }),
        (0b010000, FaultStatus::SyncExternal),
        (0b010111, FaultStatus::SyncExternalOnWalk { level: 3 }),
        (0b011000, FaultStatus::Parity),
        (0b011101, FaultStatus::ParityOnWalk { level: 1 }),
        (0b100001, FaultStatus::Alignment),
        (0b110000, FaultStatus::TlbConflict),
        (0b100010, FaultStatus::Other(0b100010)),
    ];
    for (fsc, want) in table {
        assert_eq!(FaultStatus::from_fsc(fsc), want, "{fsc:#08b}");
    }
    assert!(FaultStatus::ParityOnWalk { level: 0 }.is_external());
    assert!(!FaultStatus::Translation { level: 1 }.is_external());
}

#[test]
fn stage1_walk_counts_as_write_only_on_permission_fault() {
    let base = (0x24 << 26) | (1 << 25) | (1 << 7);
    let t = decode_armv8(base | 0b000110, 0, 0).unwrap();
    let p = decode_armv8(base | 0b001110, 0, 0).unwrap();
    assert!(!t.is_write());
    assert!(p.is_write());
}

// ----- MMIO load completion -------------------------------------------------------------------

fn access(size: u8, sign_extend: bool, sixty_four: bool) -> MmioAccess {
    MmioAccess {
        ipa: Ipa(UART),
        size,
        write: false,
        reg: 0,
        sign_extend,
        sixty_four,
        acquire_release: false,
        insn_len: 4,
    }
}

#[test]
fn mmio_load_result_truncates_sign_extends_and_narrows() {
    let table = [
        // (size, SSE, SF, loaded, register)
        (1, false, true, 0xffff_ff80, 0x80),
        (1, true, true, 0x80, 0xffff_ffff_ffff_ff80),
        (1, true, false, 0x80, 0xffff_ff80),
        (1, true, true, 0x7f, 0x7f),
        (2, true, true, 0x1_8000, 0xffff_ffff_ffff_8000),
        (2, false, false, 0xdead_beef, 0xbeef),
        (4, true, true, 0x8000_0000, 0xffff_ffff_8000_0000),
        (4, true, false, 0x8000_0000, 0x8000_0000),
        (4, false, true, 0x1_2345_6789, 0x2345_6789),
        (8, true, true, 0x8000_0000_0000_0001, 0x8000_0000_0000_0001),
        (8, false, false, 0x8000_0000_0000_0001, 0x1),
    ];
    for (size, sse, sf, data, want) in table {
        assert_eq!(
            access(size, sse, sf).load_result(data),
            want,
            "size {size} sse {sse} sf {sf}"
        );
    }
}

#[test]
fn mmio_store_value_is_truncated_to_the_access_size() {
    assert_eq!(access(1, false, true).store_value(0x1234), 0x34);
    assert_eq!(access(4, false, true).store_value(u64::MAX), 0xffff_ffff);
    assert_eq!(access(8, false, true).store_value(u64::MAX), u64::MAX);
}

#[test]
fn armv7_load_of_sign_extended_byte_fills_32_bits() {
    // LDRSB r2, [r0] to a device: SAS byte, SSE, SRT 2.
    let hsr: u32 = (0x24 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (2 << 16) | 0b000101;
    let arena = arena();
    let mut s2 = vm::<Armv7>(&arena, 40);
    let mut cache = PageCache::<8>::new();
    let regs = Armv7AbortRegs {
        hsr,
        hdfar: 0x1000,
        hifar: 0,
        hpfar: ((UART >> 12) << 4) as u32,
    };
    let Ok(AbortOutcome::Mmio(m)) = s2.handle_guest_abort(&mut cache, &regs) else {
        panic!("not mmio")
    };
    assert_eq!((m.size, m.reg, m.write), (1, 2, false));
    assert_eq!(m.load_result(0xf0), 0xffff_fff0);
}

// ----- the block policy -----------------------------------------------------------------------

fn policy_vm<'a>(arena: &'a Arena, slots: &[(u64, u64, u64, bool)]) -> Stage2<Armv8, &'a Arena> {
    let mut s2 = Stage2::<Armv8, &Arena>::new(arena, 40, 1).unwrap();
    for &(ipa, size, host, log_dirty) in slots {
        s2.add_memslot(SlotDesc {
            ipa: Ipa(ipa),
            size,
            host: PhysAddr(host),
            flags: SlotFlags {
                readonly: false,
                log_dirty,
                ..SlotFlags::default()
            },
        })
        .unwrap();
    }
    s2
}

#[test]
fn block_policy_slot_edges() {
    let arena = arena();
    // 6 MiB from 2 MiB: blocks at 2, 4 and 6 MiB... the last ends at 8 MiB, inside.
    let s2 = policy_vm(&arena, &[(BLOCK_2M, 3 * BLOCK_2M, 0x1_0020_0000, false)]);
    let s = s2.slot(SlotId(0)).unwrap();
    assert!(block_allowed(s, Ipa(BLOCK_2M), BLOCK_2M), "first byte");
    assert!(
        block_allowed(s, Ipa(4 * BLOCK_2M - 1), BLOCK_2M),
        "last byte"
    );
    assert!(
        !block_allowed(s, Ipa(4 * BLOCK_2M), BLOCK_2M),
        "past the end"
    );
    assert!(
        !block_allowed(s, Ipa(BLOCK_2M - 1), BLOCK_2M),
        "before the start"
    );
    assert!(
        !block_allowed(s, Ipa(BLOCK_2M), BLOCK_1G),
        "slot smaller than 1 GiB"
    );
    assert!(block_allowed(s, Ipa(BLOCK_2M), PAGE_SIZE));
    assert!(
        !block_allowed(s, Ipa(BLOCK_2M), 3 * PAGE_SIZE),
        "not a power of two"
    );
}

#[test]
fn block_policy_slot_end_inside_a_block() {
    let arena = arena();
    // 2 MiB + 4 KiB: the second 2 MiB block would reach past the end.
    let s2 = policy_vm(&arena, &[(0, BLOCK_2M + PAGE_SIZE, 0x1_0000_0000, false)]);
    let s = s2.slot(SlotId(0)).unwrap();
    assert!(block_allowed(s, Ipa(0x1000), BLOCK_2M));
    assert!(!block_allowed(s, Ipa(BLOCK_2M), BLOCK_2M));
    assert!(block_allowed(s, Ipa(BLOCK_2M), PAGE_SIZE));
}

#[test]
fn block_policy_slot_start_inside_a_block() {
    let arena = arena();
    let s2 = policy_vm(&arena, &[(0x1000, 2 * BLOCK_2M, 0x1_0000_1000, false)]);
    let s = s2.slot(SlotId(0)).unwrap();
    // IPA and host agree modulo 2 MiB, but the block at 0 starts before the slot.
    assert!(!block_allowed(s, Ipa(0x1000), BLOCK_2M));
    assert!(block_allowed(s, Ipa(BLOCK_2M), BLOCK_2M));
}

#[test]
fn block_policy_host_alignment_must_match_ipa_alignment() {
    let arena = arena();
    let s2 = policy_vm(
        &arena,
        &[
            // Host 4 KiB off: pages only.
            (0x4000_0000, BLOCK_1G, 0x1_0000_1000, false),
            // Host 2 MiB aligned, not 1 GiB: 2 MiB blocks, no 1 GiB one.
            (0x8000_0000, BLOCK_1G, 0x1_0020_0000, false),
            // Host 1 GiB aligned, IPA too: both.
            (0xc000_0000, BLOCK_1G, 0x2_0000_0000, false),
        ],
    );
    let (a, b, c) = (
        s2.slot(SlotId(0)).unwrap(),
        s2.slot(SlotId(1)).unwrap(),
        s2.slot(SlotId(2)).unwrap(),
    );
    assert!(!block_allowed(a, Ipa(0x4000_0000), BLOCK_2M));
    assert!(block_allowed(a, Ipa(0x4000_0000), PAGE_SIZE));
    assert!(block_allowed(b, Ipa(0x8000_0000), BLOCK_2M));
    assert!(!block_allowed(b, Ipa(0x8000_0000), BLOCK_1G));
    assert!(block_allowed(c, Ipa(0xc000_0000), BLOCK_1G));
    let g = s2.geometry();
    type F = <Armv8 as pt_hyp::Arch>::S2;
    assert_eq!(leaf_level::<F>(&g, a, Ipa(0x4000_0000), 1), 3);
    assert_eq!(leaf_level::<F>(&g, b, Ipa(0x8000_0000), 1), 2);
    assert_eq!(leaf_level::<F>(&g, c, Ipa(0xc000_0000), 1), 1);
    // A fault at level 2 has a level-1 table above it: no 1 GiB block there.
    assert_eq!(leaf_level::<F>(&g, c, Ipa(0xc000_0000), 2), 2);
    assert_eq!(leaf_level::<F>(&g, c, Ipa(0xc000_0000), 3), 3);
}

#[test]
fn block_policy_dirty_logging_allows_pages_only() {
    let arena = arena();
    let mut s2 = policy_vm(&arena, &[(0x4000_0000, 2 * BLOCK_2M, 0x1_0000_0000, true)]);
    let s = *s2.slot(SlotId(0)).unwrap();
    assert!(!block_allowed(&s, Ipa(0x4000_0000), BLOCK_2M));
    assert!(block_allowed(&s, Ipa(0x4000_0000), PAGE_SIZE));
    s2.disable_dirty_logging(SlotId(0)).unwrap();
    let s = s2.slot(SlotId(0)).unwrap();
    assert!(block_allowed(s, Ipa(0x4000_0000), BLOCK_2M));
}

#[test]
fn block_policy_ipa_outside_the_slot_is_refused() {
    let arena = arena();
    let s2 = policy_vm(&arena, &[(0x4000_0000, BLOCK_2M, 0x1_0000_0000, false)]);
    let s = s2.slot(SlotId(0)).unwrap();
    assert!(!block_allowed(s, Ipa(0x3fff_f000), PAGE_SIZE));
    assert!(!block_allowed(s, Ipa(0x4020_0000), PAGE_SIZE));
}

#[test]
fn armv7_32_bit_ipa_maps_2m_block_at_root_level() {
    let arena = arena();
    let mut s2 = vm::<Armv7>(&arena, 32);
    let mut cache = PageCache::<8>::new();
    let g = s2.geometry();
    let s = *s2.slot(S_RAM).unwrap();
    assert_eq!(
        leaf_level::<<Armv7 as pt_hyp::Arch>::S2>(&g, &s, Ipa(RAM), 0),
        2
    );
    log::clear();
    let o = take(&mut s2, &mut cache, &load(trans(1)), RAM).unwrap();
    assert_eq!(
        o,
        AbortOutcome::Mapped {
            ipa: Ipa(RAM),
            size: BLOCK_2M,
            perms: Perms::RW
        }
    );
    // One descriptor store, no table taken.
    assert_eq!(log::writes(), 1);
    assert_eq!(s2.translate(Ipa(RAM + BLOCK_2M - 1)).unwrap().level, 2);
    assert_eq!(s2.translate(Ipa(RAM + BLOCK_2M)), None);
}
