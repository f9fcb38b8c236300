//! Platform self-tests shared by both hypervisors.
//!
//! They exercise the platform layer on its own (the guest command loop with
//! stage 2 off), before the scenario runs the guest under pt-hyp's tables.

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
