//! Activation (issue 18, point 5): loading a VM's stage 2 and turning the hyp MMU on, pinned
//! instruction by instruction from the host recording (the same code runs the instructions on
//! target). Sequences from KVM's `__load_guest_stage2` / `__kvm_hyp_init` (arm64) and
//! `__activate_vm` / `__do_hyp_init` (arm32); encodings in the backends' `sysreg` modules.

use pt_core::testkit::{log, Arena};
use pt_core::trace::Record;
use pt_hyp::hyp::{self, HypConfig, HypTables};
use pt_hyp::{Armv7, Armv8, PhysAddr, Stage2, VirtAddr};

fn insns() -> Vec<(&'static str, u64)> {
    log::records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Insn { mnemonic, operand } => Some((mnemonic, operand)),
            _ => None,
        })
        .collect()
}

#[test]
fn armv8_load_stage2_writes_vtcr_vttbr_then_isb() {
    let arena = Arena::standard();
    let vm = Stage2::<Armv8, _>::new(&arena, 40, 9).unwrap();
    log::clear();
    // SAFETY: host build: the instructions are recorded, nothing runs.
    unsafe { vm.load() };
    assert_eq!(
        insns(),
        [
            ("msr vtcr_el2", 0x8002_3558),
            ("msr vttbr_el2", 9 << 48 | vm.root().0),
            ("isb", 0),
        ]
    );
}

#[test]
fn armv7_load_stage2_writes_vtcr_vttbr_then_isb() {
    let arena = Arena::standard();
    let vm = Stage2::<Armv7, _>::new(&arena, 40, 4).unwrap();
    log::clear();
    // SAFETY: host build: recorded only.
    unsafe { vm.load() };
    assert_eq!(
        insns(),
        [
            ("mcr vtcr", vm.vtcr()),
            ("mcrr vttbr", 4 << 48 | vm.root().0),
            ("isb", 0),
        ]
    );
}

#[test]
fn armv8_hyp_mmu_on_in_kvm_order() {
    let arena = Arena::standard();
    let config = HypConfig::new(39, 40, VirtAddr(0x7f_c000_0000), 1 << 30);
    let mut t = HypTables::<Armv8, _>::new(&arena, config).unwrap();
    t.map_idmap(PhysAddr(0x4008_0000), 0x1000).unwrap();
    let r = t.mmu_regs().unwrap();
    log::clear();
    // SAFETY: host build: recorded only.
    unsafe { hyp::enable_mmu::<Armv8>(&r) };
    assert_eq!(
        insns(),
        [
            ("msr mair_el2", r.mair),
            ("msr tcr_el2", r.tcr),
            ("msr ttbr0_el2", t.root().0),
            ("isb", 0),
            ("tlbi alle2", 0),
            ("dsb ish", 0),
            // The whole SCTLR_EL2: RES1 bits 4, 5, 11, 16, 18, 22, 23, 28, 29 with M, C, I.
            ("msr sctlr_el2", 0x30c5_1835),
            ("isb", 0),
        ]
    );
    t.leak();
}

#[test]
fn armv7_hyp_mmu_on_in_kvm_order() {
    let arena = Arena::standard();
    let config = HypConfig::new(32, 40, VirtAddr(0xf000_0000), 1 << 24);
    let t = HypTables::<Armv7, _>::new(&arena, config).unwrap();
    let r = t.mmu_regs().unwrap();
    log::clear();
    // SAFETY: host build: recorded only.
    unsafe { hyp::enable_mmu::<Armv7>(&r) };
    assert_eq!(
        insns(),
        [
            ("mcr hmair0", r.mair & 0xffff_ffff),
            ("mcr hmair1", r.mair >> 32),
            ("mcr htcr", r.tcr),
            ("mcrr httbr", t.root().0),
            ("isb", 0),
            ("mcr tlbiallh", 0),
            ("dsb ish", 0),
            // HSCTLR: RES1 0x30C5_0858 (DDI 0406C B4.1.67) with M (0), C (2), CP15BEN (5),
            // I (12).
            ("mcr hsctlr", 0x30c5_187d),
            ("isb", 0),
        ]
    );
}
