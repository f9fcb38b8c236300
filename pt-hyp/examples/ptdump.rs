//! `cargo run -p pt-hyp --example ptdump [armv8] [armv7]`
//!
//! Builds a sample VM on the host, the way a hypervisor would (guest aborts handled through
//! [`Stage2::handle_guest_abort`] with a [`PageCache`] topped up before each one), and prints
//! its stage-2 table dump for ARMv8 (40-bit IPA) and ARMv7 (32-bit IPA), then a hyp-mode table
//! dump for each. Table pages come from pt-core's test-kit [`Arena`] (fake physical pages at
//! 0x8000_0000); guest RAM is host memory at 0x4800_0000 that is never touched.
//!
//! The VM:
//! - slot 0: 5 MiB of RAM at IPA 0x4000_0000, demand-paged: two 2 MiB blocks, then pages for
//!   the last MiB (a block would reach past the slot);
//! - a pass-through device (two pages at IPA 0x0900_0000) and an emulated one (an MMIO access
//!   to the hole at 0x0a00_0000);
//! - a dirty-logging round on slot 0: logging on (everything write-protected, "logged"),
//!   writes (a block dissolved, pages made writable and marked dirty), the dirty log fetched
//!   (the dirty pages write-protected again), one more write;
//! - one page aged (access flag cleared, `--`).

use pt_core::testkit::Arena;
use pt_hyp::hyp::{HypConfig, HypTables};
use pt_hyp::{
    AbortOutcome, Armv7, Armv7AbortRegs, Armv8, Armv8AbortRegs, FaultArch, Ipa, PageCache, Perms,
    PhysAddr, SlotDesc, SlotFlags, Stage1Attrs, Stage2, VirtAddr,
};

const MIB: u64 = 1 << 20;
const RAM_IPA: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 5 * MIB;
const RAM_HOST: u64 = 0x4800_0000;
const UART: u64 = 0x0900_0000;
const EMULATED: u64 = 0x0a00_0000;

/// A data abort as the CPU reports it: the syndrome fields this sample needs.
#[derive(Clone, Copy)]
struct DataAbort {
    ipa: u64,
    write: bool,
    /// DFSC: 0b0001LL translation, 0b0011LL permission fault at level LL.
    fsc: u64,
}

const fn translation(ipa: u64, level: u64, write: bool) -> DataAbort {
    DataAbort {
        ipa,
        write,
        fsc: 0b00_0100 | level,
    }
}

const fn write_permission(ipa: u64, level: u64) -> DataAbort {
    DataAbort {
        ipa,
        write: true,
        fsc: 0b00_1100 | level,
    }
}

impl DataAbort {
    /// The syndrome (ESR_EL2 / HSR, same layout for these fields): EC 0x24 (data abort from
    /// the guest), IL, ISV with a 32-bit access through register 1, WnR, DFSC.
    fn syndrome(&self) -> u64 {
        (0x24 << 26)
            | (1 << 25)
            | (1 << 24)
            | (2 << 22)
            | (1 << 16)
            | (u64::from(self.write) << 6)
            | self.fsc
    }
}

/// One line for what the fault handler decided.
fn describe(o: &AbortOutcome) -> String {
    match *o {
        AbortOutcome::Mapped { ipa, size, perms } => {
            format!("mapped {}K at {:#x}, {perms:?}", size >> 10, ipa.0)
        }
        AbortOutcome::Mmio(m) => format!(
            "MMIO to emulate: {} of {} bytes through r{}",
            if m.write { "store" } else { "load" },
            m.size,
            m.reg
        ),
        other => format!("{other:?}"),
    }
}

/// The IPA ranges of the set bits of a dirty bitmap.
fn dirty_ranges(bitmap: &[u64], base: u64) -> String {
    let bit = |i: usize| bitmap[i / 64] >> (i % 64) & 1 != 0;
    let (mut out, mut i, n) = (Vec::new(), 0, bitmap.len() * 64);
    while i < n {
        if !bit(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && bit(i) {
            i += 1;
        }
        let ipa = |page: usize| base + page as u64 * 4096;
        out.push(format!("{:#x}-{:#x}", ipa(start), ipa(i)));
    }
    out.join(", ")
}

/// How each architecture reports a data abort, and the shape of a sample hyp VA space.
trait Sample: FaultArch {
    const IPA_BITS: u8;
    const HYP: HypConfig;
    fn regs(a: DataAbort) -> Self::Regs;
}

impl Sample for Armv8 {
    const IPA_BITS: u8 = 40;
    const HYP: HypConfig = HypConfig::new(39, 40, VirtAddr(0x40_0000_0000), 1 << 30);
    fn regs(a: DataAbort) -> Armv8AbortRegs {
        // The guest runs with VA == IPA here; HPFAR_EL2 holds IPA[47:12] in bits [39:4].
        Armv8AbortRegs {
            esr: a.syndrome(),
            far: a.ipa,
            hpfar: (a.ipa >> 12) << 4,
        }
    }
}

impl Sample for Armv7 {
    const IPA_BITS: u8 = 32;
    const HYP: HypConfig = HypConfig::new(32, 40, VirtAddr(0xf000_0000), 256 * MIB);
    fn regs(a: DataAbort) -> Armv7AbortRegs {
        Armv7AbortRegs {
            hsr: a.syndrome() as u32,
            hdfar: a.ipa as u32,
            hifar: 0,
            hpfar: ((a.ipa >> 12) << 4) as u32,
        }
    }
}

/// Builds the sample VM, printing what each step did, and returns its dump.
fn sample_vm<A: Sample>(arena: &Arena) -> Result<String, Box<dyn std::error::Error>> {
    let mut vm = Stage2::<A, _>::new(arena, A::IPA_BITS, 1)?;
    let mut cache = PageCache::<8>::new();
    let ram = vm.add_memslot(SlotDesc {
        ipa: Ipa(RAM_IPA),
        size: RAM_SIZE,
        host: PhysAddr(RAM_HOST),
        flags: SlotFlags::default(),
    })?;
    vm.map_device(Ipa(UART), PhysAddr(UART), 0x2000, true)?;

    let mut fault = |vm: &mut Stage2<A, &Arena>, a: DataAbort| -> Result<(), pt_hyp::Error> {
        // Outside the VM's lock: the fault path then never calls the allocator.
        cache.top_up(arena, vm.fault_pages())?;
        if a.fsc & 0b11_1100 == 0b00_1100 {
            // A permission fault: HPFAR is UNKNOWN and pt-hyp asks the guest's stage 1
            // (`AT S1E1R` / `ATS1CPR`); here the sample guest's FAR maps to the IPA itself,
            // so the translation reports the IPA's page in PAR.
            pt_core::testkit::log::queue_par(a.ipa & !0xfff);
        }
        let outcome = vm.handle_guest_abort(&mut cache, &A::regs(a))?;
        let what = if a.write { "write" } else { "read " };
        println!("  {what} {:#012x}: {}", a.ipa, describe(&outcome));
        Ok(())
    };
    // Demand paging: the fault level is that of the invalid entry the walk stopped at.
    fault(&mut vm, translation(RAM_IPA, 1, false))?; // empty tree: a 2 MiB block
    fault(&mut vm, translation(RAM_IPA + 2 * MIB, 2, true))?; // another block
    fault(&mut vm, translation(RAM_IPA + 4 * MIB, 2, true))?; // past a block's room: a page
    for page in 1..4 {
        fault(
            &mut vm,
            translation(RAM_IPA + 4 * MIB + page * 0x1000, 3, true),
        )?;
    }
    fault(&mut vm, translation(EMULATED, 1, true))?; // a hole: MMIO to emulate

    // A dirty-logging round.
    vm.enable_dirty_logging(ram)?;
    fault(&mut vm, write_permission(RAM_IPA + 2 * MIB + 0x3000, 2))?; // dissolves the block
    fault(&mut vm, write_permission(RAM_IPA + 4 * MIB + 0x1000, 3))?;
    fault(&mut vm, translation(RAM_IPA + 2 * MIB + 0x8000, 3, false))?; // read: R--, logged
    let mut bitmap = [0u64; (RAM_SIZE / 4096).div_ceil(64) as usize];
    let dirty = vm.get_dirty_log(ram, &mut bitmap)?;
    println!(
        "  dirty log: {dirty} page(s): {}",
        dirty_ranges(&bitmap, RAM_IPA)
    );
    fault(&mut vm, write_permission(RAM_IPA + 4 * MIB + 0x2000, 3))?;
    vm.test_and_clear_age(Ipa(RAM_IPA + 4 * MIB + 0x3000))?;
    cache.release(arena);

    let mut out = String::new();
    vm.dump(&mut out)?;
    Ok(out)
}

/// A hyp VA space: text, data, an identity-mapped page and a device from the I/O area.
fn sample_hyp<A: Sample>(arena: &Arena) -> Result<String, Box<dyn std::error::Error>> {
    let mut hyp = HypTables::<A, _>::new(arena, A::HYP)?;
    let base = 0x4000_0000;
    hyp.map_range(
        VirtAddr(base),
        PhysAddr(base),
        64 * 1024,
        Stage1Attrs::normal(Perms::RX),
    )?;
    hyp.map_range(
        VirtAddr(base + 0x1_0000),
        PhysAddr(base + 0x1_0000),
        4 * MIB - 0x1_0000,
        Stage1Attrs::normal(Perms::RW),
    )?;
    hyp.map_idmap(PhysAddr(0x4100_0000), 0x1000)?;
    let uart = hyp.create_io_mappings(PhysAddr(UART), 0x1000)?;
    println!("  UART at hyp VA {:#x}", uart.0);
    let mut out = String::new();
    hyp.dump(&mut out)?;
    Ok(out)
}

fn run<A: Sample>(title: &str) -> Result<(), Box<dyn std::error::Error>> {
    let arena = Arena::standard();
    println!("==== {title}: stage 2 of a {}-bit IPA VM ====", A::IPA_BITS);
    let dump = sample_vm::<A>(&arena)?;
    println!("\n{dump}");
    println!("==== {title}: hyp-mode tables ====");
    let dump = sample_hyp::<A>(&arena)?;
    println!("\n{dump}");
    assert_eq!(arena.live_pages(), 0, "every table page is back");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    if wants("armv8") {
        run::<Armv8>("ARMv8 (Cortex-A53, EL2)")?;
    }
    if wants("armv7") {
        run::<Armv7>("ARMv7 (Cortex-A15, HYP mode)")?;
    }
    Ok(())
}
