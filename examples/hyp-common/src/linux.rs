//! A stock Linux guest (Debian's kernel, an initramfs with the project's `/init`) under the
//! hypervisor, the same on both CPUs: the guest's memory layout and its loading, its VM
//! (RAM memslot demand-paged by pt-hyp with 2 MiB blocks, devices passed through, everything
//! else emulated MMIO), the exit loop (PSCI, set/way, WFI, MMIO, aborts), the live migration
//! from VM A to VM B that the guest asks for, and the checks and figures of the run.
//!
//! Several vCPUs: vCPU `i` runs on physical CPU `i` (the boot CPU runs vCPU 0; the guest's
//! PSCI `CPU_ON` of vCPU `i` starts physical CPU `i` through the platform's own PSCI). All of
//! them share one [`Shared`]: one `Stage2` per VM behind a `spin` lock, which each vCPU takes
//! for a fault after topping up its own page cache; the migration parks every vCPU in the
//! hypervisor for the stop-and-copy by unmapping the VM's RAM (see [`Shared`]).
//!
//! `xtask` builds the guest's parts and has QEMU's generic loader put them into the host
//! memory behind VM A's RAM slot ([`HOST_RAM_A`]) before the first instruction; the addresses
//! here and in `xtask/src/guest.rs` are the same.

use crate::alloc::PagePool;
use crate::migrate::{self, Migration};
use crate::psci::{self, MAX_VCPUS};
use crate::setway::SetWay;
use crate::testdev::{self, Report, TestDevice};
use crate::{Checks, GuestExit, Platform, Trap};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use pt_hyp::fault::{AbortOutcome, FaultArch};
use pt_hyp::{Ipa, PageCache, PhysAddr, SlotDesc, SlotFlags, SlotId, Stage2};
use spin::Mutex;

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

/// What one vCPU counted (printed as `STAT` lines, per vCPU and summed).
#[derive(Clone, Copy, Default)]
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
    /// The fault was already resolved when this vCPU got the VM's lock: another vCPU mapped
    /// the same page (or block) first.
    spurious: u64,
    /// Permission faults whose FAR the guest's stage 1 no longer translated.
    far_untranslated: u64,
    /// Aborts left to be re-executed because the vCPUs were being parked.
    deferred: u64,
    mmio_exits: u64,
    mmio_testdev: u64,
    psci_calls: u64,
    wfi: u64,
    wfe: u64,
    hvc: u64,
    set_way_traps: u64,
    set_way_flushes: u64,
    tvm_sctlr_traps: u64,
    /// Faults on VM B after the switch.
    faults_b: u64,
}

impl Stats {
    const fn new() -> Self {
        Self {
            exits: 0,
            faults: 0,
            instruction_faults: 0,
            mapped_2m: 0,
            mapped_4k: 0,
            dirtied: 0,
            made_writable: 0,
            access_flag: 0,
            exec_granted: 0,
            spurious: 0,
            far_untranslated: 0,
            deferred: 0,
            mmio_exits: 0,
            mmio_testdev: 0,
            psci_calls: 0,
            wfi: 0,
            wfe: 0,
            hvc: 0,
            set_way_traps: 0,
            set_way_flushes: 0,
            tvm_sctlr_traps: 0,
            faults_b: 0,
        }
    }

    fn add(&mut self, o: &Stats) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        sum!(
            exits,
            faults,
            instruction_faults,
            mapped_2m,
            mapped_4k,
            dirtied,
            made_writable,
            access_flag,
            exec_granted,
            spurious,
            far_untranslated,
            deferred,
            mmio_exits,
            mmio_testdev,
            psci_calls,
            wfi,
            wfe,
            hvc,
            set_way_traps,
            set_way_flushes,
            tvm_sctlr_traps,
            faults_b
        );
    }
}

/// One Linux VM: its stage 2 and its RAM slot.
pub struct LinuxVm<A: pt_hyp::Arch> {
    s2: Stage2<A, &'static PagePool>,
    ram: SlotId,
    host: u64,
}

impl<A: pt_hyp::Arch> LinuxVm<A> {
    /// A VM of `bits` IPA bits and `vmid` with guest RAM backed by host memory at `host`, the
    /// pass-through devices mapped, nothing of RAM mapped yet.
    fn new((bits, vmid): (u8, u16), host: u64) -> Result<Self, pt_hyp::Error> {
        let mut s2 = Stage2::new(&POOL, bits, vmid)?;
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

/// Why a vCPU's exit loop returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopEnd {
    /// The guest turned this vCPU off (PSCI `CPU_OFF`).
    Off,
    /// The run is over (some vCPU ended it).
    Over,
}

/// Times and events of the run as a whole.
#[derive(Clone, Copy)]
struct RunInfo {
    t0: u64,
    init_at: Option<u64>,
    migrated: bool,
    full_copy_ms: Option<u64>,
    downtime_ms: Option<u64>,
    /// Time to bring every running vCPU into the hypervisor for the stop-and-copy.
    park_us: Option<u64>,
    pages_after_a: Option<usize>,
    a_unmapped: bool,
    /// Physical CPUs started for the guest's `CPU_ON`s, and starts that failed.
    cpus_started: u32,
    start_failures: u32,
}

/// The page pool of the Linux VMs' tables: one pool for every vCPU's page cache.
static POOL: PagePool = PagePool::new(POOL_BASE, POOL_PAGES);

/// The capacity of each vCPU's page cache (pt-hyp's default, which covers a fault's tables
/// and a block split for every geometry used here).
type Cache = PageCache<8>;

/// What the vCPUs of the Linux guest share: the current VM behind the hypervisor's lock (the
/// role of KVM's `mmu_lock`), one page cache per vCPU (topped up on its own CPU before that
/// lock is taken), the test device, the migration, the power states, and the handshake that
/// parks every vCPU in the hypervisor. A CPU crate keeps one in a `static`
/// ([`Platform::linux_shared`]).
///
/// Lock order: a vCPU's cache, then the VM; the migration, then the park lock, then the VM.
pub struct Shared<A: pt_hyp::Arch> {
    vm: Mutex<Option<LinuxVm<A>>>,
    /// VTTBR and VTCR of the current VM, and a generation bumped at each switch: a vCPU
    /// reloads its stage-2 registers when the generation it entered with is old.
    gen: AtomicU32,
    vttbr: AtomicU64,
    vtcr: AtomicU64,
    /// `fault_pages()` of the current VM: what each cache is topped up to before a fault.
    fault_pages: AtomicUsize,
    caches: [Mutex<Cache>; MAX_VCPUS],
    dev: Mutex<TestDevice>,
    mig: Mutex<Migration>,
    power: psci::Vcpus,
    stats: [Mutex<Stats>; MAX_VCPUS],
    /// vCPU `i` is running the guest, or about to (see [`Self::enter`]).
    in_guest: [AtomicBool; MAX_VCPUS],
    /// Physical CPU `i` was started for its vCPU.
    started: [AtomicBool; MAX_VCPUS],
    /// The vCPUs are being parked: none may enter the guest, aborts are left for later.
    park: AtomicBool,
    /// Held by whoever parks the vCPUs (the stop-and-copy, the end of the run).
    parking: Mutex<()>,
    /// Set once, by the vCPU that ends the run.
    end: Mutex<Option<End>>,
    over: AtomicBool,
    info: Mutex<RunInfo>,
}

impl<A: pt_hyp::Arch> Default for Shared<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: pt_hyp::Arch> Shared<A> {
    /// Nothing yet: [`run`] creates the VM.
    pub const fn new() -> Self {
        Self {
            vm: Mutex::new(None),
            gen: AtomicU32::new(0),
            vttbr: AtomicU64::new(0),
            vtcr: AtomicU64::new(0),
            fault_pages: AtomicUsize::new(0),
            caches: [const { Mutex::new(PageCache::new()) }; MAX_VCPUS],
            dev: Mutex::new(TestDevice::new()),
            mig: Mutex::new(Migration::new()),
            power: psci::Vcpus::new(),
            stats: [const { Mutex::new(Stats::new()) }; MAX_VCPUS],
            in_guest: [const { AtomicBool::new(false) }; MAX_VCPUS],
            started: [const { AtomicBool::new(false) }; MAX_VCPUS],
            park: AtomicBool::new(false),
            parking: Mutex::new(()),
            end: Mutex::new(None),
            over: AtomicBool::new(false),
            info: Mutex::new(RunInfo {
                t0: 0,
                init_at: None,
                migrated: false,
                full_copy_ms: None,
                downtime_ms: None,
                park_us: None,
                pages_after_a: None,
                a_unmapped: false,
                cpus_started: 0,
                start_failures: 0,
            }),
        }
    }

    /// Makes `vm` the current VM (with the VM's lock held by the caller through `slot`).
    fn install(&self, slot: &mut Option<LinuxVm<A>>, vm: LinuxVm<A>) -> Option<LinuxVm<A>> {
        self.vttbr.store(vm.s2.vttbr(), Ordering::Relaxed);
        self.vtcr.store(vm.s2.vtcr(), Ordering::Relaxed);
        self.fault_pages
            .store(vm.s2.fault_pages(), Ordering::Relaxed);
        self.gen.fetch_add(1, Ordering::Release);
        slot.replace(vm)
    }

    /// The entry handshake of vCPU `i`: marks it in the guest unless the vCPUs are being
    /// parked, in which case it waits in the hypervisor until they are let go. `false`: the
    /// run is over, do not enter.
    ///
    /// With the parker's side ([`Self::park_all`]) this is Dekker's handshake on two
    /// sequentially consistent flags: either the vCPU sees `park` and stays out, or the parker
    /// sees `in_guest` and waits for the vCPU's next exit.
    fn enter(&self, i: usize) -> bool {
        loop {
            if self.over.load(Ordering::SeqCst) {
                return false;
            }
            self.in_guest[i].store(true, Ordering::SeqCst);
            if !self.park.load(Ordering::SeqCst) {
                return true;
            }
            self.in_guest[i].store(false, Ordering::SeqCst);
            while self.park.load(Ordering::SeqCst) && !self.over.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
        }
    }

    /// Brings every vCPU into the hypervisor and keeps it there (until [`Self::unpark`]);
    /// `me` is the caller's own vCPU. Returns the VM's lock, taken after the last vCPU left
    /// the guest.
    ///
    /// The guest owns the interrupts (HCR.IMO/FMO clear), so the hypervisor cannot interrupt
    /// a vCPU that runs it. Instead it unmaps the current VM's RAM through pt-hyp: the unmap's
    /// TLB invalidation is inner shareable (`TLBI ...IS` and `DSB ISH` on ARMv8, `TLBIALLIS`-
    /// class operations on ARMv7), so once it returns no CPU holds a translation of guest RAM,
    /// and the next instruction fetch of every vCPU (the guest's code is in RAM) takes a
    /// stage-2 translation fault to the hypervisor. `park` is set first, so an abort handled
    /// after the unmap maps nothing again (the handler checks it under the VM's lock) and a vCPU
    /// in the hypervisor does not re-enter. Nothing is lost: while dirty logging is on, every
    /// write since the last fetch of the log is in the log (the unmap leaves it alone), and
    /// the deferred aborts are re-executed on the VM the vCPUs resume on.
    fn park_all(&self, me: usize) -> spin::MutexGuard<'_, Option<LinuxVm<A>>> {
        self.park.store(true, Ordering::SeqCst);
        {
            let mut vm = self.vm.lock();
            if let Some(vm) = vm.as_mut() {
                // The vCPUs leave the guest whether or not every RAM page could be cleaned.
                let _ = vm.s2.unmap_vm();
            }
        }
        for (i, g) in self.in_guest.iter().enumerate() {
            while i != me && g.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
        }
        self.vm.lock()
    }

    /// Lets the parked vCPUs go back to the guest.
    fn unpark(&self) {
        self.park.store(false, Ordering::SeqCst);
    }

    /// Ends the run with `end` (the first caller wins): every vCPU parked for good, the VM's
    /// RAM unmapped. Returns the end that holds.
    fn finish(&self, me: usize, end: End) -> End {
        let _parking = self.parking.lock();
        let end = *self.end.lock().get_or_insert(end);
        drop(self.park_all(me));
        self.over.store(true, Ordering::SeqCst);
        end
    }
}

/// Boots the Linux guest loaded by `xtask` on the boot CPU (vCPU 0), lets it turn on the other
/// CPUs, runs it to PSCI SYSTEM_OFF (migrating it when it asks), and reports the checks and
/// figures.
pub fn run<P: Platform>(p: &mut P, checks: &mut Checks<P>) {
    let say = |args: core::fmt::Arguments<'_>| crate::println_p::<P>(args);
    let sh = P::linux_shared();
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
    let vm_a = match LinuxVm::<P::Arch>::new(VM_A, HOST_RAM_A) {
        Ok(vm) => vm,
        Err(e) => {
            say(format_args!("linux: VM A: {e:?}"));
            checks.check("linux_vm_created", false);
            return;
        }
    };
    checks.check("linux_vm_created", true);
    let cpus = (0..MAX_VCPUS)
        .take_while(|&i| i == 0 || P::cpu_exists(i))
        .count();
    say(format_args!(
        "linux: VM A ({}-bit IPA, VMID {}): RAM {RAM_IPA:#x}+{}M at host {HOST_RAM_A:#x}; kernel at {:#x}, DTB at {DTB_IPA:#x}; {cpus} vCPUs on {cpus} CPUs",
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
    sh.power.reset(cpus);
    sh.started[0].store(true, Ordering::Relaxed);
    {
        let mut slot = sh.vm.lock();
        sh.install(&mut slot, vm_a);
    }

    p.boot_linux(P::KERNEL_IPA, DTB_IPA);
    let freq = P::counter_freq();
    let t0 = P::counter();
    sh.info.lock().t0 = t0;
    let mut end = None;
    while end.is_none() {
        match vcpu_loop(p, sh, 0) {
            LoopEnd::Over => end = *sh.end.lock(),
            // vCPU 0 turned off by the guest: wait for a CPU_ON like a secondary.
            LoopEnd::Off => {
                if !wait_cpu_on(p, sh, 0) {
                    end = *sh.end.lock();
                }
            }
        }
    }
    let end = end.unwrap_or(End::Fatal("run over without an end"));

    let t_end = P::counter();
    let mut total = Stats::new();
    let mut per_vcpu = [Stats::new(); MAX_VCPUS];
    for (i, s) in sh.stats.iter().enumerate().take(cpus) {
        per_vcpu[i] = *s.lock();
        total.add(&per_vcpu[i]);
    }
    say(format_args!(
        "linux: guest stopped ({end:?}) after {} ms, {} exits",
        (t_end - t0) * 1000 / freq,
        total.exits
    ));

    // Teardown of the last VM (every vCPU is parked for good, the RAM already unmapped);
    // every vCPU's cache released; every table page back in the pool.
    let unmapped = {
        let mut slot = sh.vm.lock();
        let ok = slot.as_mut().is_some_and(|vm| vm.s2.unmap_vm().is_ok());
        drop(slot.take());
        ok
    };
    for c in &sh.caches {
        c.lock().release(&POOL);
    }
    let live = POOL.live_pages();
    let info = *sh.info.lock();
    let dev = sh.dev.lock();
    let mig = sh.mig.lock();

    checks.check("linux_reached_init", info.init_at.is_some());
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
        total.mmio_exits > total.mmio_testdev && dev.report(Report::ReadAsZero) == Some(true),
    );
    checks.check("linux_ram_2m_blocks_demand_paged", total.mapped_2m > 0);
    checks.check(
        "linux_set_way_flush_rule",
        (total.set_way_traps > 0 || !P::EXPECT_SET_WAY)
            && (total.set_way_traps == 0) == (total.set_way_flushes == 0),
    );
    checks.check("linux_psci_emulated", total.psci_calls > 1);
    checks.check(
        "linux_smp_cpus_started_by_psci",
        info.cpus_started as usize + 1 == cpus && info.start_failures == 0,
    );
    checks.check(
        "linux_guest_sees_all_cpus",
        dev.report(Report::Cpus) == Some(true),
    );
    checks.check(
        "linux_s2_faults_on_every_vcpu",
        per_vcpu[..cpus].iter().all(|s| s.faults > 0),
    );
    checks.check(
        "linux_writer_on_every_cpu",
        dev.report(Report::Writers) == Some(true),
    );
    // Dirty logging's write faults arrive only between the start of the migration and the
    // switch: every vCPU writing then took some.
    checks.check(
        "linux_dirty_write_faults_on_every_vcpu",
        per_vcpu[..cpus].iter().all(|s| s.dirtied > 0),
    );
    let rounds = mig.rounds();
    checks.check(
        "linux_dirty_rounds",
        rounds.len() > migrate::MIN_ROUNDS && rounds.iter().any(|&n| n > 0),
    );
    checks.check(
        "linux_migration_0_mismatched_pages",
        info.migrated && mig.mismatched_pages == Some(0),
    );
    checks.check(
        "linux_vm_b_demand_paged",
        info.migrated && total.faults_b > 0,
    );
    checks.check(
        "linux_guest_data_after_migration",
        dev.report(Report::DataBefore) == Some(true) && dev.report(Report::DataAfter) == Some(true),
    );
    checks.check("linux_psci_system_off", end == End::SystemOff);
    checks.check(
        "linux_teardown_pages_back",
        unmapped && info.a_unmapped && live == 0 && info.pages_after_a.is_some(),
    );

    let stat = |name: &str, v: u64| say(format_args!("STAT {name} {v}"));
    stat("vcpus", cpus as u64);
    stat("exits", total.exits);
    stat("s2_faults", total.faults);
    stat("s2_faults_data", total.faults - total.instruction_faults);
    stat("s2_faults_instruction", total.instruction_faults);
    for (i, s) in per_vcpu.iter().enumerate().take(cpus) {
        say(format_args!("STAT s2_faults_vcpu{i} {}", s.faults));
    }
    stat("s2_mapped_2m_blocks", total.mapped_2m);
    stat("s2_mapped_4k_pages", total.mapped_4k);
    stat("s2_dirty_write_faults", total.dirtied);
    for (i, s) in per_vcpu.iter().enumerate().take(cpus) {
        say(format_args!(
            "STAT s2_dirty_write_faults_vcpu{i} {}",
            s.dirtied
        ));
    }
    stat("s2_made_writable", total.made_writable);
    stat("s2_access_flag", total.access_flag);
    stat("s2_spurious", total.spurious);
    for (i, s) in per_vcpu.iter().enumerate().take(cpus) {
        say(format_args!("STAT s2_spurious_vcpu{i} {}", s.spurious));
    }
    stat("s2_deferred_while_parking", total.deferred);
    stat("s2_exec_granted", total.exec_granted);
    stat("s2_far_untranslated", total.far_untranslated);
    stat("s2_faults_on_vm_b", total.faults_b);
    stat("mmio_exits", total.mmio_exits);
    stat("mmio_testdev_exits", total.mmio_testdev);
    stat("psci_calls", total.psci_calls);
    stat("wfi_exits", total.wfi);
    stat("set_way_traps", total.set_way_traps);
    stat("set_way_vm_flushes", total.set_way_flushes);
    stat("tvm_sctlr_traps", total.tvm_sctlr_traps);
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
    stat(
        "migration_full_copy_ms",
        info.full_copy_ms.unwrap_or(u64::MAX),
    );
    stat(
        "migration_park_all_vcpus_us",
        info.park_us.unwrap_or(u64::MAX),
    );
    stat(
        "migration_stop_copy_compare_switch_ms",
        info.downtime_ms.unwrap_or(u64::MAX),
    );
    stat(
        "table_pages_live_after_a",
        info.pages_after_a.unwrap_or(usize::MAX) as u64,
    );
    stat("table_pages_live_at_end", live as u64);
    if let Some(t) = info.init_at {
        stat("boot_to_init_ms", (t - t0) * 1000 / freq);
    }
}

/// A secondary CPU's life, from the CPU crate's secondary entry (its own stack, vectors and
/// hyp MMU set up): takes the guest's `CPU_ON` for its vCPU, runs it until `CPU_OFF` (then
/// waits for the next `CPU_ON`) or the end of the run (then stays parked).
pub fn secondary<P: Platform>(p: &mut P) -> ! {
    let sh = P::linux_shared();
    let i = P::cpu_index();
    loop {
        if i >= MAX_VCPUS || !wait_cpu_on(p, sh, i) {
            break;
        }
        if vcpu_loop(p, sh, i) == LoopEnd::Over {
            break;
        }
    }
    loop {
        P::wait_for_interrupt();
    }
}

/// Waits in the hypervisor until vCPU `i` is on pending, then puts it into the state its
/// `CPU_ON` asked for. `false`: the run ended meanwhile.
fn wait_cpu_on<P: Platform>(p: &mut P, sh: &Shared<P::Arch>, i: usize) -> bool {
    loop {
        if sh.over.load(Ordering::SeqCst) {
            return false;
        }
        if let Some((entry, context)) = sh.power.take_pending(i) {
            p.boot_secondary(entry, context);
            return true;
        }
        core::hint::spin_loop();
    }
}

/// The exit loop of vCPU `i` on its own physical CPU.
fn vcpu_loop<P: Platform>(p: &mut P, sh: &Shared<P::Arch>, i: usize) -> LoopEnd {
    let say = |args: core::fmt::Arguments<'_>| crate::println_p::<P>(args);
    let freq = P::counter_freq();
    let mut sw = SetWay::default();
    let mut gen = u32::MAX;
    loop {
        // The page cache is topped up before the VM's lock is taken (pt-hyp's porting guide).
        let topped = sh.caches[i]
            .lock()
            .top_up(&POOL, sh.fault_pages.load(Ordering::Relaxed));
        if topped.is_err() {
            sh.finish(i, End::Fatal("table page pool exhausted"));
            return LoopEnd::Over;
        }
        if !sh.enter(i) {
            return LoopEnd::Over;
        }
        let now = sh.gen.load(Ordering::Acquire);
        if now != gen {
            gen = now;
            p.set_stage2(
                true,
                sh.vttbr.load(Ordering::Relaxed),
                sh.vtcr.load(Ordering::Relaxed),
            );
            p.invalidate_guest_tlb();
        }
        let exit = p.run_guest();
        sh.in_guest[i].store(false, Ordering::SeqCst);
        let mut st = Stats::new();
        st.exits = 1;
        let trap = p.classify(&exit);
        let mut periodic = false;
        let mut ended = None;
        let sw_before = (sw.traps, sw.flushes, sw.tvm_traps);
        match trap {
            Trap::Abort => {
                st.faults = 1;
                if exit.kind() == crate::ExitKind::InstructionAbort {
                    st.instruction_faults = 1;
                }
                periodic = true;
                if let Err(msg) = handle_abort(p, sh, i, &exit, &mut st) {
                    ended = Some(End::Fatal(msg));
                }
            }
            Trap::Smc => {
                st.psci_calls = 1;
                let fid = p.reg(0) as u32;
                let action = sh.power.call(i, fid, [p.reg(1), p.reg(2), p.reg(3)]);
                p.advance_pc(&exit);
                match action {
                    psci::Action::Return(v) => p.set_reg(0, v as i64 as u64),
                    psci::Action::Start { target } => {
                        p.set_reg(0, psci::SUCCESS as i64 as u64);
                        start_vcpu::<P>(sh, target);
                    }
                    psci::Action::Off => {
                        sh.stats[i].lock().add(&st);
                        sh.caches[i].lock().release(&POOL);
                        return LoopEnd::Off;
                    }
                    psci::Action::SystemOff => ended = Some(End::SystemOff),
                    psci::Action::SystemReset => ended = Some(End::SystemReset),
                }
            }
            Trap::Wfi | Trap::Wfe => {
                if trap == Trap::Wfi {
                    st.wfi = 1;
                    // The guest waits for an interrupt, which goes straight to it: wait for
                    // it here on its CPU, then resume the guest after the instruction (it
                    // takes the interrupt once it unmasks). This exit is also the hypervisor's
                    // periodic turn.
                    P::wait_for_interrupt();
                } else {
                    st.wfe = 1;
                }
                p.advance_pc(&exit);
                periodic = true;
            }
            Trap::SetWay => {
                let d = sw.on_set_way();
                if let Err(msg) = apply(p, sh, d) {
                    ended = Some(End::Fatal(msg));
                }
                p.advance_pc(&exit);
            }
            Trap::TvmWrite { old_sctlr } => {
                if let Some(old) = old_sctlr {
                    let d = sw.on_sctlr_write(old, p.guest_sctlr());
                    if let Err(msg) = apply(p, sh, d) {
                        ended = Some(End::Fatal(msg));
                    }
                }
                p.advance_pc(&exit);
            }
            Trap::ConditionFailed => p.advance_pc(&exit),
            Trap::Hvc(_) => {
                // No hypervisor calls are offered (PSCI goes through SMC): SMCCC's
                // NOT_SUPPORTED; the pc is already past the `hvc`.
                st.hvc = 1;
                p.set_reg(0, psci::NOT_SUPPORTED as i64 as u64);
            }
            Trap::Async(_) => ended = Some(End::Fatal("interrupt exit with IMO/FMO clear")),
            Trap::Other(_) => {
                say(format_args!("linux: vCPU {i}: unexpected exit: {exit}"));
                ended = Some(End::Fatal("unexpected exit"));
            }
        }
        st.set_way_traps = u64::from(sw.traps - sw_before.0);
        st.set_way_flushes = u64::from(sw.flushes - sw_before.1);
        st.tvm_sctlr_traps = u64::from(sw.tvm_traps - sw_before.2);
        if sh.info.lock().migrated {
            st.faults_b = st.faults;
        }
        sh.stats[i].lock().add(&st);
        if let Some(end) = ended {
            let end = sh.finish(i, end);
            say(format_args!("linux: vCPU {i} ended the run: {end:?}"));
            return LoopEnd::Over;
        }

        after_exit::<P>(sh, i, periodic, freq);
    }
}

/// Starts vCPU `target`'s physical CPU for its first `CPU_ON`; a CPU already started (its
/// vCPU was turned off before) finds the new entry point on its own.
fn start_vcpu<P: Platform>(sh: &Shared<P::Arch>, target: usize) {
    if sh.started[target].swap(true, Ordering::AcqRel) {
        return;
    }
    let r = P::start_cpu(target);
    let mut info = sh.info.lock();
    if r == psci::SUCCESS {
        info.cpus_started += 1;
    } else {
        info.start_failures += 1;
        crate::println_p::<P>(format_args!(
            "linux: PSCI CPU_ON of physical CPU {target} failed: {r}"
        ));
    }
}

/// The hypervisor's turn after an exit of vCPU `i`: `/init` reached, a migration asked for,
/// a pre-copy round due, the stop-and-copy.
fn after_exit<P: Platform>(sh: &Shared<P::Arch>, i: usize, periodic: bool, freq: u64) {
    let say = |args: core::fmt::Arguments<'_>| crate::println_p::<P>(args);
    let (init, migrate) = {
        let mut dev = sh.dev.lock();
        let init = dev.report(Report::Init).is_some();
        let m = dev.take_migration_request();
        if m {
            dev.status = testdev::STATUS_RUNNING;
        }
        (init, m)
    };
    if init {
        let mut info = sh.info.lock();
        if info.init_at.is_none() {
            let t = P::counter();
            info.init_at = Some(t);
            say(format_args!(
                "linux: guest reached /init after {} ms (generic counter)",
                (t - info.t0) * 1000 / freq
            ));
        }
    }
    if migrate {
        let mut mig = sh.mig.lock();
        if mig.state != migrate::State::Idle {
            return;
        }
        say(format_args!(
            "linux: vCPU {i}: guest asked for migration: dirty logging on VM A's RAM, full copy while every vCPU runs"
        ));
        let pages = RAM_SIZE / 4096;
        let t = P::counter();
        let started = {
            let mut vm = sh.vm.lock();
            match vm.as_mut() {
                Some(vm) => mig.start(&mut vm.s2, vm.ram, pages),
                None => Err(pt_hyp::Error::NoSuchSlot(SlotId(0))),
            }
        };
        match started {
            Ok(()) => {
                mig.full_copy(HOST_RAM_A, HOST_RAM_B, pages, P::counter, freq);
                sh.info.lock().full_copy_ms = Some((P::counter() - t) * 1000 / freq);
            }
            Err(e) => {
                say(format_args!("linux: migration start failed: {e:?}"));
                sh.dev.lock().status = testdev::STATUS_FAILED;
            }
        }
        return;
    }
    // Pre-copy rounds from WFI and fault exits of any vCPU, spaced by the generic counter;
    // one vCPU at a time does them (the others go back to the guest).
    if !periodic {
        return;
    }
    let Some(mut mig) = sh.mig.try_lock() else {
        return;
    };
    if !mig.due(P::counter()) {
        return;
    }
    if let Err(msg) = migration_step::<P>(sh, i, &mut mig, freq) {
        say(format_args!("linux: migration failed: {msg}"));
        sh.dev.lock().status = testdev::STATUS_FAILED;
    }
}

/// A due pre-copy round; after the last one the stop-and-copy with every vCPU parked, the
/// comparison, VM B built, every vCPU switched to it, VM A torn down.
fn migration_step<P: Platform>(
    sh: &Shared<P::Arch>,
    me: usize,
    mig: &mut Migration,
    freq: u64,
) -> Result<(), &'static str> {
    let say = |args: core::fmt::Arguments<'_>| crate::println_p::<P>(args);
    if !mig.stop_due {
        let n = {
            let mut vm = sh.vm.lock();
            let vm = vm.as_mut().ok_or("no VM")?;
            mig.fetch_log(&mut vm.s2, vm.ram).map_err(|_| "dirty log")?
        };
        mig.copy_logged(n, HOST_RAM_A, HOST_RAM_B, P::counter);
        say(format_args!(
            "linux: pre-copy round {} (vCPU {me}): {n} dirty pages",
            mig.n_rounds - 1
        ));
        mig.converged(n, P::counter());
        return Ok(());
    }
    let _parking = sh.parking.lock();
    if sh.over.load(Ordering::SeqCst) {
        return Err("the run ended before the stop-and-copy");
    }
    let t = P::counter();
    let mut slot = sh.park_all(me);
    let parked = P::counter();
    let pages = RAM_SIZE / 4096;
    let result = (|| {
        let vm = slot.as_mut().ok_or("no VM")?;
        let bad = mig
            .stop_and_copy(&mut vm.s2, vm.ram, vm.host, HOST_RAM_B, pages, P::counter)
            .map_err(|_| "stop-and-copy")?;
        say(format_args!(
            "linux: stop-and-copy with every vCPU parked ({} us to park them): {} dirty pages; compared {pages} pages: {bad} mismatched",
            (parked - t) * 1_000_000 / freq,
            mig.rounds().last().copied().unwrap_or(0)
        ));
        if bad != 0 {
            return Err("buffers differ after stop-and-copy");
        }
        let vm_b = LinuxVm::new(VM_B, HOST_RAM_B).map_err(|_| "cannot create VM B")?;
        Ok(sh.install(&mut slot, vm_b))
    })();
    let old = match result {
        Ok(old) => old,
        Err(msg) => {
            drop(slot);
            sh.unpark();
            return Err(msg);
        }
    };
    drop(slot);
    // Downtime: parking, stop-and-copy, comparison, VM B built; every vCPU resumes on VM B
    // (the new generation makes each reload VTTBR/VTCR).
    let downtime_ms = (P::counter() - t) * 1000 / freq;
    sh.unpark();
    let a_unmapped = old.is_some_and(|mut a| {
        let ok = a.s2.unmap_vm().is_ok();
        drop(a);
        ok
    });
    let live = POOL.live_pages();
    {
        let mut info = sh.info.lock();
        info.migrated = true;
        info.downtime_ms = Some(downtime_ms);
        info.park_us = Some((parked - t) * 1_000_000 / freq);
        info.pages_after_a = Some(live);
        info.a_unmapped = a_unmapped;
    }
    sh.dev.lock().status = testdev::STATUS_DONE;
    say(format_args!(
        "linux: switched every vCPU to VM B ({}-bit IPA, VMID {}, RAM at host {HOST_RAM_B:#x}); VM A torn down (unmapped: {a_unmapped}), {live} table pages live",
        VM_B.0, VM_B.1
    ));
    Ok(())
}

/// Acts on a set/way decision: flush the VM, turn TVM on or off (for this vCPU).
fn apply<P: Platform>(
    p: &mut P,
    sh: &Shared<P::Arch>,
    d: crate::setway::Decision,
) -> Result<(), &'static str> {
    if d.flush {
        let vm = sh.vm.lock();
        if let Some(vm) = vm.as_ref() {
            vm.s2
                .flush_dcache_vm()
                .map_err(|_| "guest memory unreachable for the VM-wide flush")?;
        }
    }
    if let Some(on) = d.tvm {
        p.set_tvm(on);
    }
    Ok(())
}

/// One stage-2 abort of vCPU `i` through pt-hyp: map, log, or emulate MMIO (the test device,
/// or read-as-zero / write-ignored). The vCPU's cache was topped up before; its lock, then
/// the VM's, are held while pt-hyp handles the abort.
fn handle_abort<P: Platform>(
    p: &mut P,
    sh: &Shared<P::Arch>,
    i: usize,
    exit: &GuestExit,
    st: &mut Stats,
) -> Result<(), &'static str> {
    // Decoded on the exit path, before anything switches the EL1 context: a permission
    // fault's IPA comes from an address translation of FAR through the guest's stage 1.
    let regs = P::abort_regs(exit);
    let abort = <P::Arch as FaultArch>::decode_abort(&regs)
        .map_err(|_| "undecodable abort")?
        .with_guest_sctlr(p.guest_sctlr());
    let outcome = {
        let mut cache = sh.caches[i].lock();
        let mut vm = sh.vm.lock();
        if sh.park.load(Ordering::SeqCst) {
            // The vCPUs are being parked (see `Shared::park_all`): map nothing, re-execute
            // the access once they are let go, on the VM they resume on.
            st.deferred += 1;
            return Ok(());
        }
        let Some(vm) = vm.as_mut() else {
            return Ok(());
        };
        loop {
            match vm.s2.handle_abort(&mut *cache, &abort) {
                Err(pt_hyp::Error::CacheExhausted { .. }) => {
                    cache
                        .top_up(vm.s2.allocator(), vm.s2.fault_pages())
                        .map_err(|_| "table page pool exhausted")?;
                }
                Err(_) => return Err("stage-2 fault handling failed"),
                Ok(o) => break o,
            }
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
                let mut dev = sh.dev.lock();
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
        AbortOutcome::Inject(inj) => {
            crate::println_p::<P>(format_args!(
                "linux: vCPU {i}: abort to inject ({:?}) at {exit}",
                inj.reason
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
