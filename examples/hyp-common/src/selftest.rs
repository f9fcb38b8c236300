//! Platform self-tests shared by both hypervisors.
//!
//! TEMPORARY: these exercise the platform layer on its own (guest with stage 2
//! off, and a throwaway 1 GiB-block stage-2 table). The real scenario built on
//! pt-hyp's tables replaces the stage-2 part.

use crate::{cmd, Checks, ExitKind, GuestExit, Platform};
use core::ptr::{read_volatile, write_volatile};

fn run<P: Platform>(p: &mut P) -> GuestExit {
    let exit = p.run_guest();
    if !matches!(exit.kind(), ExitKind::Hvc(_)) {
        P::print(format_args!("  guest exit: {exit}\n"));
    }
    exit
}

/// Issues one guest command (opcode, address, value, count) and runs the
/// guest until its next exit.
fn command<P: Platform>(p: &mut P, op: u64, addr: u64, value: u64, count: u64) -> GuestExit {
    p.set_reg(0, op);
    p.set_reg(1, addr);
    p.set_reg(2, value);
    p.set_reg(3, count);
    run(p)
}

fn rd(addr: usize) -> u32 {
    // SAFETY: callers pass addresses inside the `.guest_data` area, which is
    // RAM reserved for this purpose and 4-byte aligned.
    unsafe { read_volatile(addr as *const u32) }
}

fn wr(addr: usize, value: u32) {
    // SAFETY: as in `rd`.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// Starts the guest program with stage 2 off (VM=0, IPA == PA) and runs each
/// guest command once.
pub fn guest_commands<P: Platform>(p: &mut P, checks: &mut Checks<P>) {
    let code = P::guest_code();
    let data = P::guest_data().start;
    let entry = (code.start + P::guest_entry_offset()) as u64;
    P::print(format_args!(
        "guest code {:#x}..{:#x}, entry {:#x}, data {:#x}\n",
        code.start, code.end, entry, data
    ));

    p.set_stage2(false, 0, 0);
    p.set_pc(entry);
    let exit = run(p);
    checks.check(
        "guest_hello_hvc",
        exit.kind() == ExitKind::Hvc(cmd::HELLO) && p.reg(0) == cmd::HELLO_VALUE,
    );
    checks.check(
        "guest_exit_pc",
        p.pc() == exit.elr && (code.start as u64..code.end as u64).contains(&p.pc()),
    );

    // STORE.
    let exit = command(p, cmd::STORE, data as u64, 0x1234_5678, 0);
    checks.check(
        "guest_cmd_store",
        exit.kind() == ExitKind::Hvc(cmd::STORE as u16) && rd(data) == 0x1234_5678,
    );

    // LOAD, and every register not named by the command survives the exit.
    wr(data + 4, 0xcafe_f00d);
    for n in 3..P::NUM_REGS {
        p.set_reg(n, 0x5a00_0000 | n as u64);
    }
    let exit = command(p, cmd::LOAD, data as u64 + 4, 0, 3);
    checks.check(
        "guest_cmd_load",
        exit.kind() == ExitKind::Hvc(cmd::LOAD as u16) && p.reg(2) == 0xcafe_f00d,
    );
    let preserved = (4..P::NUM_REGS).all(|n| p.reg(n) == 0x5a00_0000 | n as u64);
    checks.check(
        "guest_regs_preserved",
        preserved && p.reg(1) == data as u64 + 4,
    );

    // FILL 4 pages.
    p.set_reg(4, 4096);
    let page = (data + 0x1000) as u64;
    let exit = command(p, cmd::FILL, page, 0xa5a5_0001, 4);
    let filled = (0..4).all(|i| rd(data + 0x1000 + i * 4096) == 0xa5a5_0001);
    checks.check(
        "guest_cmd_fill",
        exit.kind() == ExitKind::Hvc(cmd::FILL as u16) && filled && rd(data + 0x5000) == 0,
    );

    // LOAD_LIST of 3 addresses; the 4th list register is untouched.
    for i in 0..3 {
        wr(data + 0x100 + 4 * i, 0x1111_0000 + i as u32);
        p.set_reg(P::LIST_BASE + i, (data + 0x100 + 4 * i) as u64);
    }
    p.set_reg(P::LIST_BASE + 3, 0x77);
    let exit = command(p, cmd::LOAD_LIST, 0, 0, 3);
    let loaded = (0..3).all(|i| p.reg(P::LIST_BASE + i) == 0x1111_0000 + i as u64);
    checks.check(
        "guest_cmd_load_list",
        exit.kind() == ExitKind::Hvc(cmd::LOAD_LIST as u16)
            && loaded
            && p.reg(P::LIST_BASE + 3) == 0x77,
    );

    // STORE_LIST of the full 8 addresses.
    for i in 0..cmd::MAX_LIST {
        p.set_reg(P::LIST_BASE + i, (data + 0x200 + 4 * i) as u64);
    }
    let exit = command(p, cmd::STORE_LIST, 0, 0xbeef_0042, cmd::MAX_LIST as u64);
    let stored = (0..cmd::MAX_LIST).all(|i| rd(data + 0x200 + 4 * i) == 0xbeef_0042);
    checks.check(
        "guest_cmd_store_list",
        exit.kind() == ExitKind::Hvc(cmd::STORE_LIST as u16) && stored,
    );

    // Unknown opcode.
    let exit = command(p, 0x99, 0, 0, 0);
    checks.check(
        "guest_cmd_unknown",
        exit.kind() == ExitKind::Hvc(cmd::UNKNOWN),
    );
}

/// Stage-2 descriptor bits (identical in ARMv7 LPAE and ARMv8 VMSA).
const S2_BLOCK: u64 = 0b01;
const S2_NORMAL_WB: u64 = 0b1111 << 2; // MemAttr: outer WB, inner WB
const S2_RW: u64 = 0b11 << 6; // S2AP
const S2_INNER_SHAREABLE: u64 = 0b11 << 8;
const S2_AF: u64 = 1 << 10;

/// Unmapped IPA used for the stage-2 abort tests.
const UNMAPPED_IPA: u64 = 0x8000_0010;

/// TEMPORARY stage-2 self-test with a throwaway table: `l1` is a zeroed,
/// 4 KiB-aligned level-1 table (32-bit IPA space, 4 x 1 GiB entries); it is
/// filled with one block identity-mapping RAM at 0x4000_0000. `vtcr` must
/// describe that (T0SZ = 32-bit, start level 1, 4 KiB granule). Runs a
/// command touching an unmapped IPA, emulates the load like MMIO, and
/// checks the decoded abort.
///
/// Needs [`guest_commands`] to have run before (guest waiting for commands).
///
/// # Safety
/// `l1` must point to a 4 KiB-aligned table of at least 4 entries that
/// nothing else uses, at an address equal to its physical address.
pub unsafe fn guest_stage2<P: Platform>(
    p: &mut P,
    checks: &mut Checks<P>,
    l1: *mut u64,
    vtcr: u64,
) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        for i in 0..4 {
            write_volatile(l1.add(i), 0);
        }
        write_volatile(
            l1.add(1),
            0x4000_0000 | S2_AF | S2_INNER_SHAREABLE | S2_RW | S2_NORMAL_WB | S2_BLOCK,
        );
    }
    // VMID 1 in VTTBR[55:48].
    let vttbr = (l1 as usize as u64) | (1 << 48);
    p.set_stage2(true, vttbr, vtcr);
    p.invalidate_guest_tlb();

    // Mapped RAM still works with stage 2 on.
    let data = P::guest_data().start;
    wr(data + 0x300, 0x5151_5151);
    let exit = command(p, cmd::LOAD, data as u64 + 0x300, 0, 0);
    checks.check(
        "stage2_mapped_load",
        exit.kind() == ExitKind::Hvc(cmd::LOAD as u16) && p.reg(2) == 0x5151_5151,
    );

    // Load from an unmapped IPA: stage-2 translation fault, emulated.
    let exit = command(p, cmd::LOAD, UNMAPPED_IPA, 0, 0);
    let decoded = exit.kind() == ExitKind::DataAbort
        && exit.fault_ipa() == UNMAPPED_IPA
        && exit.isv()
        && !exit.is_write()
        && exit.srt() == 2
        && exit.access_size() == 4
        && (exit.fsc() & 0x3c) == 0x04; // translation fault, any level
    checks.check("stage2_abort_decode", decoded);
    let fault_pc = p.pc();
    if exit.kind() == ExitKind::DataAbort {
        p.set_reg(exit.srt(), 0xd00d);
        p.advance_pc(&exit);
    }
    let exit = run(p);
    checks.check(
        "stage2_mmio_emulate",
        exit.kind() == ExitKind::Hvc(cmd::LOAD as u16)
            && p.reg(2) == 0xd00d
            && fault_pc + 4 <= p.pc(),
    );

    // Store to an unmapped IPA: write abort naming the value register.
    let exit = command(p, cmd::STORE, UNMAPPED_IPA + 0x10, 0x77, 0);
    checks.check(
        "stage2_store_abort",
        exit.kind() == ExitKind::DataAbort
            && exit.is_write()
            && exit.srt() == 2
            && exit.fault_ipa() == UNMAPPED_IPA + 0x10,
    );
    let resumed = exit.kind() == ExitKind::DataAbort && {
        p.advance_pc(&exit);
        run(p).kind() == ExitKind::Hvc(cmd::STORE as u16)
    };
    checks.check("stage2_resume_after_store", resumed);
    p.set_stage2(false, 0, 0);
}
