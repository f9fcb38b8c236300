use crate::maint::mnemonic as m;
use crate::Maint;
use pt_core::testkit::log;
use pt_core::trace::Record;
use pt_core::{Barrier, CacheOp, Ipa, Maintenance, TlbOp, VirtAddr};

extern crate std;
use std::vec;
use std::vec::Vec;

fn insn(mnemonic: &'static str, operand: u64) -> Record {
    Record::Insn { mnemonic, operand }
}

fn run(f: impl FnOnce()) -> Vec<Record> {
    log::reset();
    f();
    log::records()
}

const VTTBR: u64 = (7 << 48) | 0x8000_2000;

fn vmid_flush(vttbr: u64) -> Vec<Record> {
    vec![
        insn(m::MRRC_VTTBR, 0),
        insn(m::MCRR_VTTBR, vttbr),
        insn(m::ISB, 0),
        insn(m::TLBIALLIS, 0),
        insn(m::MCRR_VTTBR, 0), // restores what was read (the host reads 0)
        insn(m::ISB, 0),
    ]
}

#[test]
fn armv7_cannot_invalidate_stage2_by_ipa() {
    const { assert!(!<Maint as Maintenance>::S2_BY_IPA) };
}

#[test]
fn s2_vmid_switches_vttbr_and_issues_tlbiallis() {
    let op = TlbOp::S2Vmid { vttbr: VTTBR };
    let mut want = vec![Record::Tlb(op)];
    want.extend(vmid_flush(VTTBR));
    assert_eq!(run(|| Maint.tlb(op)), want);
}

#[test]
fn s2_ipa_and_combined_fall_back_to_the_whole_vmid_flush() {
    for op in [
        TlbOp::S2Ipa {
            vttbr: VTTBR,
            ipa: Ipa(0x4000_1000),
            level: 3,
        },
        TlbOp::S2CombinedForVmid { vttbr: VTTBR },
    ] {
        let mut want = vec![Record::Tlb(op)];
        want.extend(vmid_flush(VTTBR));
        assert_eq!(run(|| Maint.tlb(op)), want, "{op:?}");
    }
}

#[test]
fn hyp_va_is_tlbimvahis_of_the_page() {
    let op = TlbOp::HypVa {
        va: VirtAddr(0xc000_1234),
    };
    assert_eq!(
        run(|| Maint.tlb(op)),
        vec![Record::Tlb(op), insn(m::TLBIMVAHIS, 0xc000_1000)]
    );
}

#[test]
fn hyp_va_beyond_4g_cannot_be_mapped_and_becomes_tlbiallhis() {
    let op = TlbOp::HypVa {
        va: VirtAddr(0x1_0000_0000),
    };
    assert_eq!(
        run(|| Maint.tlb(op)),
        vec![Record::Tlb(op), insn(m::TLBIALLHIS, 0)]
    );
}

#[test]
fn hyp_all_is_tlbiallhis() {
    let op = TlbOp::HypAll;
    assert_eq!(
        run(|| Maint.tlb(op)),
        vec![Record::Tlb(op), insn(m::TLBIALLHIS, 0)]
    );
}

#[test]
fn barriers() {
    for (b, name) in [
        (Barrier::DsbIshSt, m::DSB_ISHST),
        (Barrier::DsbIsh, m::DSB_ISH),
        (Barrier::Isb, m::ISB),
    ] {
        assert_eq!(
            run(|| Maint.barrier(b)),
            vec![Record::Barrier(b), insn(name, 0)]
        );
    }
}

#[test]
fn dcache_clean_invalidate_walks_every_line_then_dsb() {
    let va = VirtAddr(0x4000_1010);
    let recs = run(|| Maint.dcache(CacheOp::CleanInvalidate, 0x4000_1010, 0x80));
    assert_eq!(
        recs,
        vec![
            Record::DCache {
                op: CacheOp::CleanInvalidate,
                va,
                len: 0x80
            },
            insn(m::DCCIMVAC, 0x4000_1000),
            insn(m::DCCIMVAC, 0x4000_1040),
            insn(m::DCCIMVAC, 0x4000_1080),
            insn(m::DSB_ISH, 0),
        ]
    );
}

#[test]
fn dcache_clean_uses_dccmvac() {
    let va = VirtAddr(0x8000_0000);
    let recs = run(|| Maint.dcache(CacheOp::Clean, 0x8000_0000, 0x40));
    assert_eq!(
        recs,
        vec![
            Record::DCache {
                op: CacheOp::Clean,
                va,
                len: 0x40
            },
            insn(m::DCCMVAC, 0x8000_0000),
            insn(m::DSB_ISH, 0),
        ]
    );
    assert_eq!(Maint.dcache_line_size(), 64);
}

#[test]
fn dcache_of_nothing_is_only_the_barrier() {
    let va = VirtAddr(0x8000_0010);
    let recs = run(|| Maint.dcache(CacheOp::Clean, 0x8000_0010, 0));
    assert_eq!(
        recs,
        vec![
            Record::DCache {
                op: CacheOp::Clean,
                va,
                len: 0
            },
            insn(m::DSB_ISH, 0)
        ]
    );
}

#[test]
fn dcache_clean_to_pou_uses_dccmvau() {
    // DDI 0406C B4.2.1: DCCMVAU is MCR p15, 0, <Rt>, c7, c11, 1 (clean by MVA to PoU).
    let recs = run(|| Maint.dcache(CacheOp::CleanToPou, 0x4000_0020, 0x40));
    assert_eq!(
        recs,
        vec![
            Record::DCache {
                op: CacheOp::CleanToPou,
                va: VirtAddr(0x4000_0020),
                len: 0x40
            },
            insn(m::DCCMVAU, 0x4000_0000),
            insn(m::DCCMVAU, 0x4000_0040),
            insn(m::DSB_ISH, 0),
        ]
    );
}

#[test]
fn dcache_range_up_to_the_top_of_the_address_space_stops_there() {
    // The last line of the address space: one operation, no wrap to address 0.
    let top = usize::MAX & !63;
    let recs = run(|| Maint.dcache(CacheOp::CleanInvalidate, top, 0x1000));
    assert_eq!(
        recs,
        vec![
            Record::DCache {
                op: CacheOp::CleanInvalidate,
                va: VirtAddr(top as u64),
                len: 0x1000
            },
            insn(m::DCCIMVAC, top as u64),
            insn(m::DSB_ISH, 0),
        ]
    );
}

#[test]
fn translate_guest_read_is_ats1cpr_with_the_guests_par_saved_and_restored() {
    // KVM arm32 `__populate_fault_info`: read PAR, ATS1CPR, ISB, read PAR, write the old PAR
    // back. The host reads PAR as 0 and the translation's result is the queued value.
    pt_core::testkit::log::reset();
    pt_core::testkit::log::queue_par(0x0000_0040_1234_5000 | (1 << 11));
    let par = Maint.translate_guest_read(0xc012_3456);
    assert_eq!(par, 0x0000_0040_1234_5000 | (1 << 11));
    assert_eq!(
        pt_core::testkit::log::records(),
        vec![
            insn(m::MRRC_PAR, 0),
            insn(m::ATS1CPR, 0xc012_3456),
            insn(m::ISB, 0),
            insn(m::MRRC_PAR, 0),
            insn(m::MCRR_PAR, 0),
        ]
    );
}

#[test]
fn icache_invalidate_all_is_icialluis_bpiallis_dsb_isb() {
    assert_eq!(
        run(|| Maint.icache_invalidate_all()),
        vec![
            Record::ICacheInvalidateAll,
            insn(m::ICIALLUIS, 0),
            insn(m::BPIALLIS, 0),
            insn(m::DSB_ISH, 0),
            insn(m::ISB, 0),
        ]
    );
}

#[test]
fn flush_vm_context_is_tlbiallnsnhis_icialluis_dsb() {
    assert_eq!(
        run(|| Maint.flush_vm_context()),
        vec![
            insn(m::TLBIALLNSNHIS, 0),
            insn(m::ICIALLUIS, 0),
            insn(m::DSB_ISH, 0)
        ]
    );
}
