//! A stock Linux guest (Debian's kernel, an initramfs with the project's `/init`) under the
//! hypervisor, the same on both CPUs: the guest's memory layout and its loading, its VM
//! (RAM memslot demand-paged by pt-hyp with 2 MiB blocks, devices passed through, everything
//! else emulated MMIO), the exit loop (PSCI, set/way, WFI, MMIO, aborts), the live migration
//! from VM A to VM B that the guest asks for, and the checks and figures of the run.
//!
//! `xtask` builds the guest's parts and has QEMU's generic loader put them into the host
//! memory behind VM A's RAM slot ([`HOST_RAM_A`]) before the first instruction; the addresses
//! here and in `xtask/src/guest.rs` are the same.

use crate::alloc::PagePool;
use crate::migrate::{self, Migration};
use crate::psci;
use crate::setway::SetWay;
use crate::testdev::{self, Report, TestDevice};
use crate::{Checks, GuestExit, Platform, Trap};
use pt_hyp::fault::{AbortOutcome, FaultArch};
use pt_hyp::{Ipa, PageCache, PhysAddr, SlotDesc, SlotFlags, SlotId, Stage2};

const MIB: u64 = 1 << 20;
/// Guest RAM: IPA and size (the memory node of the guest's device tree).
pub const RAM_IPA: u64 = 0x4000_0000;
pub const RAM_SIZE: u64 = 256 * MIB;
/// Device tree and initramfs in guest RAM (the initramfs range is in the device tree).
pub const DTB_IPA: u64 = 0x4800_0000;
pub const INITRD_IPA: u64 = 0x4a00_0000;
/// Host memory behind VM A's RAM slot (filled by QEMU's loader) and VM B's.
pub const HOST_RAM_A: u64 = 0x5000_0000;
pub const HOST_RAM_B: u64 = 0x6000_0000;
/// Table pages of the Linux VMs: their own pool, after the image's RAM (`__ram_end`).
const POOL_BASE: u64 = 0x4800_0000;
const POOL_PAGES: usize = crate::alloc::MAX_PAGES;
/// IPA sizes and VMIDs of the two VMs.
const VM_A: (u8, u16) = (40, 1);
const VM_B: (u8, u16) = (32, 2);

/// Devices passed through at their own addresses (IPA == PA), read/write, device memory:
/// GIC distributor, GIC CPU interface, PL011 UART, PL031 RTC.
const PASSTHROUGH: [(u64, u64, &str); 4] = [
    (0x0800_0000, 0x1_0000, "GIC distributor"),
    (0x0801_0000, 0x1_0000, "GIC CPU interface"),
    (0x0900_0000, 0x1000, "PL011"),
    (0x0901_0000, 0x1000, "PL031"),
];

/// Magic of a flattened device tree (big endian at offset 0).
const FDT_MAGIC: u32 = 0xd00d_feed;

/// Host address of guest RAM IPA `ipa` in VM A.
fn host_a(ipa: u64) -> u64 {
    HOST_RAM_A + (ipa - RAM_IPA)
}

fn read_u32(pa: u64) -> u32 {
    // SAFETY: RAM behind VM A's slot, identity mapped in the hypervisor's tables.
    unsafe { core::ptr::read_volatile(pa as usize as *const u32) }
}

/// What the run counted (printed as `STAT` lines).
#[derive(Default)]
struct Stats {
    exits: u64,
    faults: u64,
    /// Of `faults`: instruction aborts (the rest are data aborts).
    instruction_faults: u64,
    mapped_2m: u64,
    mapped_4k: u64,
    dirtied: u64,
    made_writable: u64,
    access_flag: u64,
    /// Execute permission added to a page mapped for data first.
    exec_granted: u64,
    spurious: u64,
    /// Permission faults whose FAR the guest's stage 1 no longer translated.
    far_untranslated: u64,
    mmio_exits: u64,
    mmio_testdev: u64,
    psci_calls: u64,
    wfi: u64,
    wfe: u64,
    hvc: u64,
    /// Faults on VM B after the switch.
    faults_b: u64,
}

/// One Linux VM: its stage 2 and its RAM slot.
struct LinuxVm<'a, A: pt_hyp::Arch> {
    s2: Stage2<A, &'a PagePool>,
    ram: SlotId,
    host: u64,
}

impl<'a, A: pt_hyp::Arch> LinuxVm<'a, A> {
    /// A VM of `bits` IPA bits and `vmid` with guest RAM backed by host memory at `host`, the
    /// pass-through devices mapped, nothing of RAM mapped yet.
    fn new(pool: &'a PagePool, (bits, vmid): (u8, u16), host: u64) -> Result<Self, pt_hyp::Error> {
        let mut s2 = Stage2::new(pool, bits, vmid)?;
        let ram = s2.add_memslot(SlotDesc {
            ipa: Ipa(RAM_IPA),
            size: RAM_SIZE,
            host: PhysAddr(host),
            flags: SlotFlags::default(),
        })?;
        for (pa, size, _) in PASSTHROUGH {
            s2.map_device(Ipa(pa), PhysAddr(pa), size, true)?;
        }
        Ok(Self { s2, ram, host })
    }
}

/// How the guest's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    SystemOff,
    SystemReset,
    /// Something the hypervisor cannot handle; the message says what.
    Fatal(&'static str),
}

/// Boots the Linux guest loaded by `xtask`, runs it to PSCI SYSTEM_OFF (migrating it when it
/// asks), and reports the checks and figures.
pub fn run<P: Platform>(p: &mut P, checks: &mut Checks<P>) {
    let say = |args: core::fmt::Arguments<'_>| crate::println_p::<P>(args);
    let (magic_off, magic) = P::KERNEL_MAGIC;
    let kernel_ok = read_u32(host_a(P::KERNEL_IPA) + magic_off as u64) == magic;
    let dtb_ok = u32::from_be(read_u32(host_a(DTB_IPA))) == FDT_MAGIC;
    if !checks.check("linux_parts_loaded", kernel_ok && dtb_ok) {
        say(format_args!(
            "linux: no kernel at IPA {:#x} or no device tree at {DTB_IPA:#x} (run through `cargo xtask qemu`)",
            P::KERNEL_IPA
        ));
        return;
    }
    let pool = PagePool::new(POOL_BASE, POOL_PAGES);
    let vm_a = match LinuxVm::<P::Arch>::new(&pool, VM_A, HOST_RAM_A) {
        Ok(vm) => vm,
        Err(e) => {
            say(format_args!("linux: VM A: {e:?}"));
            checks.check("linux_vm_created", false);
            return;
        }
    };
    checks.check("linux_vm_created", true);
    say(format_args!(
        "linux: VM A ({}-bit IPA, VMID {}): RAM {RAM_IPA:#x}+{}M at host {HOST_RAM_A:#x}; kernel at {:#x}, DTB at {DTB_IPA:#x}",
        VM_A.0,
        VM_A.1,
        RAM_SIZE / MIB,
        P::KERNEL_IPA
    ));
    for (pa, size, name) in PASSTHROUGH {
        say(format_args!(
            "linux:   pass-through {name} {pa:#x}+{size:#x}"
        ));
    }

    let mut vm = vm_a;
    let mut cache = PageCache::<8>::new();
    let mut dev = TestDevice::default();
    let mut sw = SetWay::default();
    let mut st = Stats::default();
    let mut mig = Migration::new();
    let mut migrated = false;
    let mut init_at = None;
    let mut pages_after_a: Option<usize> = None;
    let mut full_copy_ms = None;
    let mut downtime_ms = None;
    let freq = P::counter_freq();

    p.boot_linux(P::KERNEL_IPA, DTB_IPA);
    p.set_stage2(true, vm.s2.vttbr(), vm.s2.vtcr());
    p.invalidate_guest_tlb();
    let t0 = P::counter();

    let end = loop {
        if cache.top_up(&pool, vm.s2.fault_pages()).is_err() {
            break End::Fatal("table page pool exhausted");
        }
        let exit = p.run_guest();
        st.exits += 1;
        let trap = p.classify(&exit);
        let mut periodic = false;
        match trap {
            Trap::Abort => {
                st.faults += 1;
                if exit.kind() == crate::ExitKind::InstructionAbort {
                    st.instruction_faults += 1;
                }
                if migrated {
                    st.faults_b += 1;
                }
                periodic = true;
                match handle_abort(p, &mut vm, &mut cache, &exit, &mut dev, &mut st) {
                    Ok(()) => {}
                    Err(msg) => break End::Fatal(msg),
                }
            }
            Trap::Smc => {
                st.psci_calls += 1;
                let fid = p.reg(0) as u32;
                let action = psci::call(fid, p.reg(1), p.guest_mpidr());
                p.advance_pc(&exit);
                match action {
                    psci::Action::Return(v) => p.set_reg(0, v as i64 as u64),
                    psci::Action::SystemOff => break End::SystemOff,
                    psci::Action::SystemReset => break End::SystemReset,
                }
            }
            Trap::Wfi | Trap::Wfe => {
                if trap == Trap::Wfi {
                    st.wfi += 1;
                } else {
                    st.wfe += 1;
                }
                // The guest waits for an interrupt, which goes straight to it: resume it
                // after the instruction (it checks for work and waits again); this exit is the
                // hypervisor's periodic turn.
                p.advance_pc(&exit);
                periodic = true;
            }
            Trap::SetWay => {
                let d = sw.on_set_way();
                if let Err(msg) = apply(p, &vm, d) {
                    break End::Fatal(msg);
                }
                p.advance_pc(&exit);
            }
            Trap::TvmWrite { old_sctlr } => {
                if let Some(old) = old_sctlr {
                    let d = sw.on_sctlr_write(old, p.guest_sctlr());
                    if let Err(msg) = apply(p, &vm, d) {
                        break End::Fatal(msg);
                    }
                }
                p.advance_pc(&exit);
            }
            Trap::ConditionFailed => p.advance_pc(&exit),
            Trap::Hvc(_) => {
                // No hypervisor calls are offered (PSCI goes through SMC): SMCCC's
                // NOT_SUPPORTED; the pc is already past the `hvc`.
                st.hvc += 1;
                p.set_reg(0, psci::NOT_SUPPORTED as i64 as u64);
            }
            Trap::Async(_) => break End::Fatal("interrupt exit with IMO/FMO clear"),
            Trap::Other(_) => {
                say(format_args!("linux: unexpected exit: {exit}"));
                break End::Fatal("unexpected exit");
            }
        }

        if init_at.is_none() && dev.report(Report::Init).is_some() {
            let t = P::counter();
            init_at = Some(t);
            say(format_args!(
                "linux: guest reached /init after {} ms (generic counter)",
                (t - t0) * 1000 / freq
            ));
        }
        if dev.take_migration_request() && mig.state == migrate::State::Idle {
            say(format_args!(
                "linux: guest asked for migration: dirty logging on VM A's RAM, full copy"
            ));
            dev.status = testdev::STATUS_RUNNING;
            let pages = RAM_SIZE / 4096;
            let t = P::counter();
            let started = mig.start(
                &mut vm.s2,
                vm.ram,
                vm.host,
                HOST_RAM_B,
                pages,
                P::counter,
                freq,
            );
            full_copy_ms = Some((P::counter() - t) * 1000 / freq);
            if let Err(e) = started {
                say(format_args!("linux: migration start failed: {e:?}"));
                dev.status = testdev::STATUS_FAILED;
            }
        }
        // Pre-copy rounds from WFI and fault exits, spaced by the generic counter.
        if periodic && mig.due(P::counter()) {
            let t = P::counter();
            match migration_step::<P>(&mut vm, &pool, &mut mig) {
                Ok(Some(new_vm)) => {
                    // Downtime: stop-and-copy, comparison, VM B built, switch.
                    downtime_ms = Some((P::counter() - t) * 1000 / freq);
                    // Switch the vCPU to VM B, then tear VM A down.
                    let mut old = core::mem::replace(&mut vm, new_vm);
                    p.set_stage2(true, vm.s2.vttbr(), vm.s2.vtcr());
                    p.invalidate_guest_tlb();
                    let unmapped = old.s2.unmap_vm().is_ok();
                    drop(old);
                    pages_after_a = Some(pool.live_pages());
                    migrated = true;
                    dev.status = testdev::STATUS_DONE;
                    say(format_args!(
                        "linux: switched to VM B ({}-bit IPA, VMID {}, RAM at host {HOST_RAM_B:#x}); VM A torn down (unmapped: {unmapped}), {} table pages live",
                        VM_B.0,
                        VM_B.1,
                        pool.live_pages()
                    ));
                }
                Ok(None) => {}
                Err(msg) => {
                    say(format_args!("linux: migration failed: {msg}"));
                    dev.status = testdev::STATUS_FAILED;
                }
            }
        }
    };

    let t_end = P::counter();
    say(format_args!(
        "linux: guest stopped ({end:?}) after {} ms, {} exits",
        (t_end - t0) * 1000 / freq,
        st.exits
    ));

    // Teardown of the last VM; every table page back in the pool.
    let unmapped = vm.s2.unmap_vm().is_ok();
    drop(vm);
    cache.release(&pool);
    let live = pool.live_pages();

    checks.check("linux_reached_init", init_at.is_some());
    let sizes = (P::MAX_MMIO_SIZE << 1) - 1;
    checks.check(
        "linux_mmio_testdev_roundtrip",
        dev.report(Report::Device) == Some(true)
            && dev.read_sizes == sizes
            && dev.write_sizes == sizes
            && dev.mismatched_reads == 0,
    );
    checks.check(
        "linux_mmio_raz_wi_emulated",
        st.mmio_exits > st.mmio_testdev && dev.report(Report::ReadAsZero) == Some(true),
    );
    checks.check("linux_ram_2m_blocks_demand_paged", st.mapped_2m > 0);
    checks.check(
        "linux_set_way_flush_rule",
        (sw.traps > 0 || !P::EXPECT_SET_WAY) && (sw.traps == 0) == (sw.flushes == 0),
    );
    checks.check("linux_psci_emulated", st.psci_calls > 1);
    let rounds = mig.rounds();
    checks.check(
        "linux_dirty_rounds",
        rounds.len() > migrate::MIN_ROUNDS && rounds.iter().any(|&n| n > 0),
    );
    checks.check(
        "linux_migration_0_mismatched_pages",
        migrated && mig.mismatched_pages == Some(0),
    );
    checks.check("linux_vm_b_demand_paged", migrated && st.faults_b > 0);
    checks.check(
        "linux_guest_data_after_migration",
        dev.report(Report::DataBefore) == Some(true) && dev.report(Report::DataAfter) == Some(true),
    );
    checks.check("linux_psci_system_off", end == End::SystemOff);
    checks.check(
        "linux_teardown_pages_back",
        unmapped && live == 0 && pages_after_a.is_some(),
    );

    let stat = |name: &str, v: u64| say(format_args!("STAT {name} {v}"));
    stat("exits", st.exits);
    stat("s2_faults", st.faults);
    stat("s2_faults_data", st.faults - st.instruction_faults);
    stat("s2_faults_instruction", st.instruction_faults);
    stat("s2_mapped_2m_blocks", st.mapped_2m);
    stat("s2_mapped_4k_pages", st.mapped_4k);
    stat("s2_dirty_write_faults", st.dirtied);
    stat("s2_made_writable", st.made_writable);
    stat("s2_access_flag", st.access_flag);
    stat("s2_spurious", st.spurious);
    stat("s2_exec_granted", st.exec_granted);
    stat("s2_far_untranslated", st.far_untranslated);
    stat("s2_faults_on_vm_b", st.faults_b);
    stat("mmio_exits", st.mmio_exits);
    stat("mmio_testdev_exits", st.mmio_testdev);
    stat("psci_calls", st.psci_calls);
    stat("wfi_exits", st.wfi);
    stat("set_way_traps", sw.traps.into());
    stat("set_way_vm_flushes", sw.flushes.into());
    stat("tvm_sctlr_traps", sw.tvm_traps.into());
    stat(
        "migration_mismatched_pages",
        mig.mismatched_pages.unwrap_or(u64::MAX),
    );
    for (i, n) in rounds.iter().enumerate() {
        say(format_args!(
            "STAT dirty_pages_round_{i}{} {n}",
            if i + 1 == rounds.len() { "_stop" } else { "" }
        ));
    }
    stat("migration_full_copy_ms", full_copy_ms.unwrap_or(u64::MAX));
    stat(
        "migration_stop_copy_compare_switch_ms",
        downtime_ms.unwrap_or(u64::MAX),
    );
    stat(
        "table_pages_live_after_a",
        pages_after_a.unwrap_or(usize::MAX) as u64,
    );
    stat("table_pages_live_at_end", live as u64);
    if let Some(t) = init_at {
        stat("boot_to_init_ms", (t - t0) * 1000 / freq);
    }
}

/// Acts on a set/way decision: flush the VM, turn TVM on or off.
fn apply<P: Platform>(
    p: &mut P,
    vm: &LinuxVm<'_, P::Arch>,
    d: crate::setway::Decision,
) -> Result<(), &'static str> {
    if d.flush {
        vm.s2
            .flush_dcache_vm()
            .map_err(|_| "guest memory unreachable for the VM-wide flush")?;
    }
    if let Some(on) = d.tvm {
        p.set_tvm(on);
    }
    Ok(())
}

/// One stage-2 abort through pt-hyp: map, log, or emulate MMIO (the test device, or
/// read-as-zero / write-ignored).
fn handle_abort<P: Platform>(
    p: &mut P,
    vm: &mut LinuxVm<'_, P::Arch>,
    cache: &mut PageCache<8>,
    exit: &GuestExit,
    dev: &mut TestDevice,
    st: &mut Stats,
) -> Result<(), &'static str> {
    let regs = P::abort_regs(exit);
    let abort = <P::Arch as FaultArch>::decode_abort(&regs)
        .map_err(|_| "undecodable abort")?
        .with_guest_sctlr(p.guest_sctlr());
    let outcome = loop {
        match vm.s2.handle_abort(cache, &abort) {
            Err(pt_hyp::Error::CacheExhausted { .. }) => {
                cache
                    .top_up(vm.s2.allocator(), vm.s2.fault_pages())
                    .map_err(|_| "table page pool exhausted")?;
            }
            Err(_) => return Err("stage-2 fault handling failed"),
            Ok(o) => break o,
        }
    };
    match outcome {
        AbortOutcome::Mapped { size, .. } => {
            if size == 4096 {
                st.mapped_4k += 1;
            } else {
                st.mapped_2m += 1;
            }
        }
        AbortOutcome::Dirtied { .. } => st.dirtied += 1,
        AbortOutcome::MadeWritable { .. } => st.made_writable += 1,
        AbortOutcome::AccessFlagSet { .. } => st.access_flag += 1,
        AbortOutcome::ExecGranted { .. } => st.exec_granted += 1,
        AbortOutcome::Spurious => st.spurious += 1,
        AbortOutcome::FarUntranslated => st.far_untranslated += 1,
        AbortOutcome::Mmio(m) => {
            st.mmio_exits += 1;
            // A64 register 31 is the zero register for loads and stores.
            let xzr = m.reg as usize >= P::NUM_REGS;
            if TestDevice::contains(m.ipa.0) {
                st.mmio_testdev += 1;
                if m.write {
                    let v = if xzr { 0 } else { p.reg(m.reg as usize) };
                    dev.write(m.ipa.0, m.size, m.store_value(v));
                } else {
                    let v = dev.read(m.ipa.0, m.size);
                    if !xzr {
                        p.set_reg(m.reg as usize, m.load_result(v));
                    }
                }
            } else if !m.write && !xzr {
                p.set_reg(m.reg as usize, m.load_result(0));
            }
            p.advance_pc(exit);
        }
        AbortOutcome::SkipInstruction { .. } => p.advance_pc(exit),
        AbortOutcome::Inject(i) => {
            crate::println_p::<P>(format_args!(
                "linux: abort to inject ({:?}) at {exit}",
                i.reason
            ));
            return Err("guest abort the hypervisor would have to inject");
        }
        // `AbortOutcome` is `#[non_exhaustive]`: an outcome added later that only resumes the
        // guest needs nothing here; anything else stops the run.
        o if o.resumes_guest() => {}
        _ => return Err("stage-2 abort outcome this hypervisor does not know"),
    }
    Ok(())
}

/// A due pre-copy round; after the last one the stop-and-copy, the comparison, and VM B
/// built and returned for the switch.
fn migration_step<'a, P: Platform>(
    vm: &mut LinuxVm<'a, P::Arch>,
    pool: &'a PagePool,
    mig: &mut Migration,
) -> Result<Option<LinuxVm<'a, P::Arch>>, &'static str> {
    let say = |args: core::fmt::Arguments<'_>| crate::println_p::<P>(args);
    if !mig.stop_due {
        let n = mig
            .round(&mut vm.s2, vm.ram, vm.host, HOST_RAM_B, P::counter)
            .map_err(|_| "dirty log")?;
        say(format_args!(
            "linux: pre-copy round {}: {n} dirty pages",
            mig.n_rounds - 1
        ));
        mig.converged(n, P::counter());
        return Ok(None);
    }
    let pages = RAM_SIZE / 4096;
    let bad = mig
        .stop_and_copy(&mut vm.s2, vm.ram, vm.host, HOST_RAM_B, pages, P::counter)
        .map_err(|_| "stop-and-copy")?;
    say(format_args!(
        "linux: stop-and-copy: {} dirty pages; compared {pages} pages: {bad} mismatched",
        mig.rounds().last().copied().unwrap_or(0)
    ));
    if bad != 0 {
        return Err("buffers differ after stop-and-copy");
    }
    LinuxVm::new(pool, VM_B, HOST_RAM_B)
        .map(Some)
        .map_err(|_| "cannot create VM B")
}
