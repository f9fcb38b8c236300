//! `pt-bench-ops`: runs one operation once, for instruction counting under callgrind
//! (`benches/callgrind.sh`), or writes the report.
//!
//! ```text
//! pt-bench-ops [--quick] <subject|floor> <op>   # run once; the timed part is `pt_bench::work::run*`
//! pt-bench-ops [--quick] report                 # rewrite target/pt-bench/results.md and the SVG
//! pt-bench-ops [--quick] units <op>             # units per run (for per-unit counts)
//! ```

use pt_bench::pool::Pool;
use pt_bench::subjects::{
    AArch64Paging, OursV7, OursV8, PageTableGeneric, PageTableMultiarch, Subject,
};
use pt_bench::work::{self, Op, Sizes};

fn once<S: Subject>(op: Op, z: &Sizes) {
    if !S::has(op) {
        println!("n/a");
        return;
    }
    let pool = Pool::leak(8192);
    let p = work::prepare::<S>(pool, op, z);
    let rest = work::run(p, op, z);
    drop(rest);
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.first().is_some_and(|a| a == "--quick");
    if quick {
        args.remove(0);
    }
    let z = if quick { Sizes::QUICK } else { Sizes::FULL };
    let usage = "usage: pt-bench-ops [--quick] <armv8|armv7|aarch64-paging|page-table-generic|page_table_multiarch|floor|units> <op> | report";
    match args.as_slice() {
        [r] if r == "report" => print!("{}", pt_bench::report::write_all(&z)),
        [who, op] => {
            let op = Op::from_id(op).unwrap_or_else(|| panic!("unknown op {op}; {usage}"));
            match who.as_str() {
                "units" => println!("{}", op.units(&z)),
                "armv8" => once::<OursV8>(op, &z),
                "armv7" => once::<OursV7>(op, &z),
                "aarch64-paging" => once::<AArch64Paging>(op, &z),
                "page-table-generic" => once::<PageTableGeneric>(op, &z),
                "page_table_multiarch" => once::<PageTableMultiarch>(op, &z),
                "floor" => match work::floor_units(op, &z) {
                    Some(n) => {
                        let mut buf = vec![0u64; n as usize];
                        work::prepare_floor(&mut buf, op);
                        work::run_floor(&mut buf, op);
                    }
                    None => println!("n/a"),
                },
                _ => panic!("{usage}"),
            }
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
