//! The example hypervisor's scenario, the same on both CPUs, using only pt-hyp's public API:
//! hyp-mode tables and MMU on, then for a 40-bit and a 32-bit IPA VM: memslots, a demand-paged
//! guest (code, RAM pages, 2 MiB blocks), an emulated MMIO device, a dirty-logging round, an
//! access to an IPA never given, and teardown with the page count checked.

use crate::alloc::PagePool;
use crate::setway::SetWay;
use crate::{cmd, Checks, ExitKind, GuestExit, Platform, Trap};
use pt_hyp::fault::AbortOutcome;
use pt_hyp::hyp::{HypConfig, HypTables};
use pt_hyp::{Ipa, PageCache, Perms, PhysAddr, SlotDesc, SlotFlags, Stage1Attrs, Stage2, VirtAddr};

const MIB: u64 = 1 << 20;
/// RAM of QEMU `virt` as the examples use it (`-m 1G`): the image and its pools, and the
/// host memory behind the Linux guest's two VMs (see [`crate::linux`]).
const RAM: (u64, u64) = (0x4000_0000, 0x8000_0000);
const UART: u64 = 0x0900_0000;
/// IPA of the emulated device (a hole: no memslot).
const DEVICE_IPA: u64 = 0x0a00_0000;
/// Value the emulated device returns for its ID register.
const DEVICE_ID: u64 = 0x5eed_0001;
/// IPA of the slot able to take 2 MiB blocks.
const BLOCK_SLOT_IPA: u64 = 0x6000_0000;
const BLOCK_SLOT_SIZE: u64 = 4 * MIB;
/// IPA of the page-mapped slot used for dirty logging.
const LOG_SLOT_IPA: u64 = 0x6100_0000;
const LOG_SLOT_PAGES: u64 = 32;
/// An IPA the guest was never given.
const NEVER_GIVEN_IPA: u64 = 0x7000_0000;
/// Pages of table memory.
const POOL_PAGES: usize = 1024;

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// The emulated device: a read-only ID register at offset 0, a scratch register at offset 4.
#[derive(Default)]
struct Device {
    scratch: u64,
    reads: u32,
    writes: u32,
}

/// What stopped a guest run.
enum Stop {
    Hvc(u16),
    /// An access the hypervisor could not satisfy: outside every slot and not the device.
    Unhandled {
        ipa: u64,
    },
    /// pt-hyp told us to inject an abort (or the exit was unexpected).
    Abort(GuestExit),
}

struct Vm<'a, P: Platform> {
    vm: Stage2<P::Arch, &'a PagePool>,
    cache: PageCache<8>,
    pool: &'a PagePool,
    dev: Device,
    faults: u32,
    /// Set/way and TVM traps, handled by [`crate::setway`]'s rule.
    sw: SetWay,
    /// Range operations of the VM-wide flushes done for them.
    flush_ops: usize,
}

impl<'a, P: Platform> Vm<'a, P> {
    /// Runs the guest until its next `hvc`, handling stage-2 aborts through pt-hyp.
    fn run(&mut self, p: &mut P) -> Stop {
        let stop = self.run_inner(p);
        if let Stop::Abort(exit) = &stop {
            crate::println_p::<P>(format_args!("  guest abort not handled: {exit}"));
        }
        stop
    }

    fn run_inner(&mut self, p: &mut P) -> Stop {
        loop {
            // Top up outside "the lock": the fault path then never calls the allocator.
            if self.cache.top_up(self.pool, self.vm.fault_pages()).is_err() {
                crate::println_p::<P>(format_args!("page pool exhausted"));
            }
            let exit = p.run_guest();
            match exit.kind() {
                ExitKind::Hvc(imm) => return Stop::Hvc(imm),
                ExitKind::DataAbort | ExitKind::InstructionAbort => {}
                _ => {
                    // Set/way maintenance and the TVM traps it turns on (KVM's rule).
                    let d = match p.classify(&exit) {
                        Trap::SetWay => self.sw.on_set_way(),
                        Trap::TvmWrite {
                            old_sctlr: Some(old),
                        } => self.sw.on_sctlr_write(old, p.guest_sctlr()),
                        Trap::TvmWrite { old_sctlr: None } => Default::default(),
                        _ => return Stop::Abort(exit),
                    };
                    if d.flush {
                        match self.vm.flush_dcache_vm() {
                            Ok(n) => self.flush_ops += n,
                            Err(_) => return Stop::Abort(exit),
                        }
                    }
                    if let Some(on) = d.tvm {
                        p.set_tvm(on);
                    }
                    p.advance_pc(&exit);
                    continue;
                }
            }
            self.faults += 1;
            let regs = P::abort_regs(&exit);
            match self.vm.handle_guest_abort(&mut self.cache, &regs) {
                Ok(AbortOutcome::Mmio(m)) => {
                    let off = m.ipa.0.wrapping_sub(DEVICE_IPA);
                    if off >= 0x1000 {
                        return Stop::Unhandled { ipa: m.ipa.0 };
                    }
                    if m.write {
                        self.dev.writes += 1;
                        if off == 4 {
                            self.dev.scratch = m.store_value(p.reg(m.reg as usize));
                        }
                    } else {
                        self.dev.reads += 1;
                        let v = if off == 0 {
                            DEVICE_ID
                        } else {
                            self.dev.scratch
                        };
                        p.set_reg(m.reg as usize, m.load_result(v));
                    }
                    p.advance_pc(&exit);
                }
                Ok(AbortOutcome::SkipInstruction { .. }) => p.advance_pc(&exit),
                Ok(AbortOutcome::Inject(_)) | Err(_) => return Stop::Abort(exit),
                Ok(_) => {}
            }
        }
    }

    /// Runs one guest command (see [`cmd`]) and returns the HVC immediate it stopped on.
    fn command(
        &mut self,
        p: &mut P,
        op: u64,
        addr: u64,
        value: u64,
        count: u64,
        list: &[u64],
    ) -> Stop {
        p.set_reg(0, op);
        p.set_reg(1, addr);
        p.set_reg(2, value);
        p.set_reg(3, count);
        p.set_reg(4, 4096);
        for (i, &a) in list.iter().enumerate() {
            p.set_reg(P::LIST_BASE + i, a);
        }
        self.run(p)
    }
}

fn is_hvc(s: &Stop, imm: u64) -> bool {
    matches!(s, Stop::Hvc(i) if *i as u64 == imm)
}

/// Host memory layout carved from the free RAM after the image.
struct Layout {
    pool: u64,
    block_host: u64,
    log_host: u64,
}

fn layout<P: Platform>() -> Layout {
    let free = P::free_ram();
    let pool = align_up(free.start as u64, 4096);
    let block_host = align_up(pool + POOL_PAGES as u64 * 4096, 2 * MIB);
    let log_host = block_host + BLOCK_SLOT_SIZE;
    assert!(
        log_host + LOG_SLOT_PAGES * 4096 <= free.end as u64,
        "RAM too small"
    );
    Layout {
        pool,
        block_host,
        log_host,
    }
}

/// Runs the whole scenario, reporting each step as a named check.
pub fn run<P: Platform>(p: &mut P, checks: &mut Checks<P>) {
    let l = layout::<P>();
    let pool = PagePool::new(l.pool, POOL_PAGES);

    // 1. The hypervisor's own tables: RAM identity mapped (the identity map the MMU is turned
    // on from; one RWX range, asked for explicitly), the UART as a device both at its own
    // address and at a VA from the private I/O area.
    let cfg = HypConfig::new(32, 40, VirtAddr(0xf000_0000), 0x100_0000);
    let mut hyp = match HypTables::<P::Arch, &PagePool>::new(&pool, cfg) {
        Ok(h) => h,
        Err(_) => {
            checks.check("hyp_tables_created", false);
            return;
        }
    };
    let ram_ok = hyp
        .map_range_allow_wx(
            VirtAddr(RAM.0),
            PhysAddr(RAM.0),
            RAM.1 - RAM.0,
            Stage1Attrs::normal(Perms::RWX),
        )
        .is_ok();
    let uart_ok = hyp
        .map_range(
            VirtAddr(UART),
            PhysAddr(UART),
            0x1000,
            Stage1Attrs::device(),
        )
        .is_ok();
    let uart_va = hyp.create_io_mappings(PhysAddr(UART), 0x1000);
    let here = run::<P> as *const () as usize as u64;
    let idmap_ok = hyp
        .translate(VirtAddr(here))
        .is_some_and(|t| t.oa.0 == here);
    checks.check(
        "hyp_tables_built",
        ram_ok && uart_ok && uart_va.is_ok() && idmap_ok,
    );
    let regs = match hyp.mmu_regs() {
        Ok(r) => r,
        Err(_) => {
            checks.check("hyp_mmu_regs", false);
            return;
        }
    };
    // SAFETY: the tables map all of RAM (code, data, stack, tables) and the UART at their
    // identity addresses, as the running code needs.
    unsafe { P::enable_hyp_mmu(&P::hyp_mmu_regs(&regs)) };
    crate::println_p::<P>(format_args!(
        "hyp MMU on with pt-hyp tables (root {:#x})",
        regs.ttbr
    ));
    // The PL011's PeriphID0 (0xfe0) reads 0x11 through the I/O-area mapping.
    let id = uart_va.map_or(0, |va| {
        // SAFETY: `va` maps the PL011's 4 KiB register page as device memory.
        unsafe { core::ptr::read_volatile((va.0 + 0xfe0) as usize as *const u32) }
    });
    checks.check("hyp_mmu_on_uart_io_mapping", id == 0x11);

    for (bits, vmid) in [(40u8, 1u16), (32, 2)] {
        run_vm(p, checks, &pool, &l, bits, vmid);
    }
    // The hyp tables stay: the MMU runs on them until the hypervisor exits.
    hyp.leak();
}

fn run_vm<P: Platform>(
    p: &mut P,
    checks: &mut Checks<P>,
    pool: &PagePool,
    l: &Layout,
    bits: u8,
    vmid: u16,
) {
    let name = |s: &str| -> heapless_name::Name { heapless_name::Name::new(s, bits) };
    let before = pool.live_pages();
    let stage2 = match Stage2::<P::Arch, &PagePool>::new(pool, bits, vmid) {
        Ok(v) => v,
        Err(_) => {
            checks.check(name("vm_created").as_str(), false);
            return;
        }
    };
    checks.check(
        name("vm_created").as_str(),
        pool.live_pages() - before == stage2.geometry().root_pages(),
    );
    let mut vm = Vm::<P> {
        vm: stage2,
        cache: PageCache::new(),
        pool,
        dev: Device::default(),
        faults: 0,
        sw: SetWay::default(),
        flush_ops: 0,
    };

    // 2. Memslots: guest code (read-only: executable, writes would be MMIO), guest data, a
    // 4 MiB RAM slot that can take 2 MiB blocks, a page slot for dirty logging; a hole at the
    // device.
    let code = P::guest_code();
    let data = P::guest_data();
    let ro = SlotFlags {
        readonly: true,
        log_dirty: false,
        ..SlotFlags::default()
    };
    let rw = SlotFlags::default();
    let slot = |ipa: u64, size: u64, host: u64, flags| SlotDesc {
        ipa: Ipa(ipa),
        size,
        host: PhysAddr(host),
        flags,
    };
    let s_code = vm.vm.add_memslot(slot(
        code.start as u64,
        (code.end - code.start) as u64,
        code.start as u64,
        ro,
    ));
    let s_data = vm.vm.add_memslot(slot(
        data.start as u64,
        (data.end - data.start) as u64,
        data.start as u64,
        rw,
    ));
    let s_block = vm
        .vm
        .add_memslot(slot(BLOCK_SLOT_IPA, BLOCK_SLOT_SIZE, l.block_host, rw));
    let s_log = vm
        .vm
        .add_memslot(slot(LOG_SLOT_IPA, LOG_SLOT_PAGES * 4096, l.log_host, rw));
    let overlap = vm
        .vm
        .add_memslot(slot(BLOCK_SLOT_IPA + 4096, 4096, l.block_host, rw));
    checks.check(
        name("memslots_added").as_str(),
        s_code.is_ok() && s_data.is_ok() && s_block.is_ok() && s_log.is_ok() && overlap.is_err(),
    );
    let (Ok(s_block), Ok(s_log)) = (s_block, s_log) else {
        return;
    };

    // 3. Run the guest: its code is demand-paged through instruction aborts.
    p.set_pc(code.start as u64 + P::guest_entry_offset() as u64);
    p.set_stage2(true, vm.vm.vttbr(), vm.vm.vtcr());
    p.invalidate_guest_tlb();
    let hello = vm.run(p);
    checks.check(
        name("guest_boots_demand_paged").as_str(),
        is_hvc(&hello, cmd::HELLO as u64) && p.reg(0) == cmd::HELLO_VALUE && vm.faults >= 1,
    );

    // RAM pages and blocks: the guest stores to four IPAs in two 2 MiB blocks and loads them
    // back; the stores reach the host pages behind the slot.
    let addrs = [
        BLOCK_SLOT_IPA,
        BLOCK_SLOT_IPA + 0x1234 * 4,
        BLOCK_SLOT_IPA + 2 * MIB + 0x8000,
        BLOCK_SLOT_IPA + 4 * MIB - 4,
    ];
    let st = vm.command(
        p,
        cmd::STORE_LIST,
        0,
        0xa5a5_0000 + bits as u64,
        addrs.len() as u64,
        &addrs,
    );
    let ld = vm.command(p, cmd::LOAD_LIST, 0, 0, addrs.len() as u64, &addrs);
    let loaded = (0..addrs.len()).all(|i| p.reg(P::LIST_BASE + i) == 0xa5a5_0000 + bits as u64);
    let host_sees = addrs.iter().all(|a| {
        let host = l.block_host + (a - BLOCK_SLOT_IPA);
        // SAFETY: the host page behind the slot, identity mapped in the hyp tables.
        unsafe {
            core::ptr::read_volatile(host as usize as *const u32) as u64
                == 0xa5a5_0000 + bits as u64
        }
    });
    checks.check(
        name("guest_ram_store_load").as_str(),
        is_hvc(&st, cmd::STORE_LIST) && is_hvc(&ld, cmd::LOAD_LIST) && loaded && host_sees,
    );
    let blocks = addrs.iter().all(|&a| {
        vm.vm
            .translate(Ipa(a))
            .is_some_and(|t| t.level == 2 && t.pa.0 == l.block_host + (a - BLOCK_SLOT_IPA))
    });
    checks.check(name("ram_mapped_as_2m_blocks").as_str(), blocks);

    // Emulated device: a load of the ID register and a store + load of the scratch register.
    let id = vm.command(p, cmd::LOAD, DEVICE_IPA, 0, 0, &[]);
    let id_ok = is_hvc(&id, cmd::LOAD) && p.reg(2) == DEVICE_ID;
    let wr = vm.command(p, cmd::STORE, DEVICE_IPA + 4, 0x1234_5678, 0, &[]);
    let rd = vm.command(p, cmd::LOAD, DEVICE_IPA + 4, 0, 0, &[]);
    checks.check(
        name("mmio_emulated").as_str(),
        id_ok
            && is_hvc(&wr, cmd::STORE)
            && is_hvc(&rd, cmd::LOAD)
            && p.reg(2) == 0x1234_5678
            && vm.dev.reads == 2
            && vm.dev.writes == 1,
    );

    // Set/way maintenance (HCR.TSW): the first operation flushes the VM (by address, every
    // mapped range) and turns TVM on; an SCTLR write is then trapped and emulated (caches
    // still off: no flush, TVM stays on); a second set/way operation flushes nothing more.
    // Where the CPU model does not trap set/way (P::SET_WAY_TRAPS false), TVM is turned on
    // by hand and only the SCTLR trap and its emulation are checked.
    let sw1 = vm.command(p, cmd::SET_WAY, 0, 0, 0, &[]);
    let after_first = (vm.sw.traps, vm.sw.flushes, vm.flush_ops);
    if !P::SET_WAY_TRAPS {
        p.set_tvm(true);
    }
    let sctlr = p.guest_sctlr();
    let ws = vm.command(p, cmd::WRITE_SCTLR, 0, sctlr, 0, &[]);
    let sw2 = vm.command(p, cmd::SET_WAY, 0, 0, 0, &[]);
    let sctlr_ok =
        is_hvc(&ws, cmd::WRITE_SCTLR) && vm.sw.tvm_traps == 1 && p.guest_sctlr() == sctlr;
    crate::println_p::<P>(format_args!(
        "  set/way: {} traps, {} VM flushes ({} range operations), {} SCTLR writes trapped",
        vm.sw.traps, vm.sw.flushes, vm.flush_ops, vm.sw.tvm_traps
    ));
    if P::SET_WAY_TRAPS {
        checks.check(
            name("set_way_trapped_vm_flushed").as_str(),
            is_hvc(&sw1, cmd::SET_WAY)
                && after_first == (1, 1, after_first.2)
                && after_first.2 > 0
                && sctlr_ok
                && is_hvc(&sw2, cmd::SET_WAY)
                && vm.sw.traps == 2
                && vm.sw.flushes == 1,
        );
    } else {
        checks.check(
            name("tvm_sctlr_write_trapped").as_str(),
            is_hvc(&sw1, cmd::SET_WAY) && is_hvc(&sw2, cmd::SET_WAY) && sctlr_ok,
        );
    }
    p.set_tvm(false);

    // Dirty logging: every page of the log slot is written (mapped writable), logging is
    // turned on, the guest writes K chosen pages, and the bitmap holds exactly those.
    let fill = vm.command(p, cmd::FILL, LOG_SLOT_IPA, 1, LOG_SLOT_PAGES, &[]);
    let pages_mapped = (0..LOG_SLOT_PAGES).all(|i| {
        vm.vm
            .translate(Ipa(LOG_SLOT_IPA + i * 4096))
            .is_some_and(|t| t.level == 3 && t.attrs.perms.write())
    });
    let logging = vm.vm.enable_dirty_logging(s_log).is_ok();
    let chosen = [3u64, 7, 20];
    let list: [u64; 3] = core::array::from_fn(|i| LOG_SLOT_IPA + chosen[i] * 4096 + 8);
    let w = vm.command(p, cmd::STORE_LIST, 0, 0xd1d1, 3, &list);
    let mut bitmap = [0u64; 1];
    let n = vm.vm.get_dirty_log(s_log, &mut bitmap);
    let expect = chosen.iter().fold(0u64, |m, &i| m | 1 << i);
    checks.check(
        name("dirty_log_exact_pages").as_str(),
        is_hvc(&fill, cmd::FILL)
            && pages_mapped
            && logging
            && is_hvc(&w, cmd::STORE_LIST)
            && n == Ok(3)
            && bitmap[0] == expect,
    );
    // A second round: the same pages were write-protected again; one more write is logged.
    let w2 = vm.command(p, cmd::STORE, LOG_SLOT_IPA + 9 * 4096, 5, 0, &[]);
    let n2 = vm.vm.get_dirty_log(s_log, &mut bitmap);
    checks.check(
        name("dirty_log_second_round").as_str(),
        is_hvc(&w2, cmd::STORE) && n2 == Ok(1) && bitmap[0] == 1 << 9,
    );
    let _ = vm.vm.disable_dirty_logging(s_log);

    // An IPA never given: the hypervisor sees the access (no slot, not the device) and the
    // guest reaches no memory; x2 keeps the sentinel.
    let sentinel = 0xdead_beef;
    let never = vm.command(p, cmd::LOAD, NEVER_GIVEN_IPA, sentinel, 0, &[]);
    let seen = matches!(never, Stop::Unhandled { ipa } if ipa == NEVER_GIVEN_IPA);
    checks.check(
        name("never_given_ipa_refused").as_str(),
        seen && vm.vm.translate(Ipa(NEVER_GIVEN_IPA)).is_none() && p.reg(2) == sentinel,
    );

    // 4. Teardown: unmap every RAM slot, then free the whole tree; the pool is back where it
    // started.
    let unmapped = vm.vm.unmap_vm().is_ok() && vm.vm.translate(Ipa(BLOCK_SLOT_IPA)).is_none();
    let _ = s_block;
    vm.cache.release(pool);
    drop(vm);
    p.set_stage2(false, 0, 0);
    checks.check(
        name("teardown_pages_back").as_str(),
        unmapped && pool.live_pages() == before,
    );
}

/// Check names with the IPA size appended, without an allocator.
mod heapless_name {
    pub struct Name {
        buf: [u8; 48],
        len: usize,
    }

    impl Name {
        pub fn new(s: &str, bits: u8) -> Self {
            let mut n = Name {
                buf: [0; 48],
                len: 0,
            };
            for &b in s.as_bytes().iter().chain(b"_ipa") {
                n.push(b);
            }
            n.push(b'0' + bits / 10);
            n.push(b'0' + bits % 10);
            n
        }

        fn push(&mut self, b: u8) {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }

        pub fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
        }
    }
}
