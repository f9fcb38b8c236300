//! The VMID-rollover flush (`__kvm_flush_vm_context`), reachable through [`Arch`] on both
//! architectures. The expected sequences are KVM's: arm32 `hyp/tlb.c` writes TLBIALLNSNHIS
//! and ICIALLUIS, then `dsb(ish)`; arm64 `hyp/tlb.c` (4.x) is `dsb(ishst)`, `tlbi alle1is`,
//! `ic ialluis`, `dsb(ish)`.

use pt_core::testkit::log;
use pt_core::trace::Record;
use pt_hyp::{Arch, Armv7, Armv8};

fn insn(mnemonic: &'static str) -> Record {
    Record::Insn {
        mnemonic,
        operand: 0,
    }
}

fn flush<A: Arch>() -> Vec<Record> {
    log::reset();
    A::flush_vm_context(&A::Maint::default());
    log::records()
}

#[test]
fn armv7_vmid_rollover_flush_is_tlbiallnsnhis_icialluis_dsb_ish() {
    assert_eq!(
        flush::<Armv7>(),
        [
            insn("mcr tlbiallnsnhis"),
            insn("mcr icialluis"),
            insn("dsb ish")
        ]
    );
}

#[test]
fn armv8_vmid_rollover_flush_is_dsb_ishst_tlbi_alle1is_ic_ialluis_dsb_ish() {
    assert_eq!(
        flush::<Armv8>(),
        [
            insn("dsb ishst"),
            insn("tlbi alle1is"),
            insn("ic ialluis"),
            insn("dsb ish")
        ]
    );
}
