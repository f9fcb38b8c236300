//! `cargo bench -p pt-bench`: every operation for every subject and the floor, in one run.
//!
//! `PT_BENCH_QUICK=1` runs the quick sizes with short measurement windows. Criterion's own
//! options (`--warm-up-time`, `--measurement-time`, a name filter) still apply. Results (median
//! ns per unit) go to `target/pt-bench/` and the summary tables are printed at the end.

use criterion::{BenchmarkId, Criterion, Throughput};
use pt_bench::pool::Pool;
use pt_bench::report::{self, Results};
use pt_bench::subjects::{Subject, PAGE};
use pt_bench::work::{self, Op, Sizes};
use pt_bench::{for_each_subject, FLOOR};
use std::cell::RefCell;
use std::time::{Duration, Instant};

thread_local! {
    static SAMPLES: RefCell<std::collections::BTreeMap<(String, String), Vec<f64>>> =
        RefCell::default();
}

fn record(key: (&str, &str), total: Duration, iters: u64, units: u64) {
    let v = total.as_nanos() as f64 / iters as f64 / units as f64;
    SAMPLES.with(|s| {
        s.borrow_mut()
            .entry((key.0.to_string(), key.1.to_string()))
            .or_default()
            .push(v)
    });
}

fn medians() -> Results {
    SAMPLES.with(|s| {
        s.borrow()
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                (k.clone(), v[v.len() / 2])
            })
            .collect()
    })
}

/// Times `iters` runs of `op` on `S`, each from an untimed setup.
fn time_op<S: Subject>(pool: &'static Pool, op: Op, z: &Sizes, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let p = work::prepare::<S>(pool, op, z);
        let t = Instant::now();
        let rest = work::run(p, op, z);
        total += t.elapsed();
        drop(rest);
    }
    total
}

fn time_floor(buf: &mut [u64], op: Op, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        work::prepare_floor(buf, op);
        let t = Instant::now();
        work::run_floor(buf, op);
        total += t.elapsed();
    }
    total
}

fn bench_subject<S: Subject>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    pool: &'static Pool,
    op: Op,
    z: &Sizes,
) {
    if !S::has(op) {
        return;
    }
    let units = op.units(z);
    g.bench_function(S::NAME, |b| {
        b.iter_custom(|iters| {
            let t = time_op::<S>(pool, op, z, iters);
            record((op.id(), S::NAME), t, iters, units);
            t
        })
    });
}

fn check_tables<S: Subject>(pool: &'static Pool, z: &Sizes, out: &mut Results) {
    let (pages, blocks) = work::tables_used::<S>(pool, z);
    out.insert(("pages".into(), S::NAME.into()), pages as f64);
    out.insert(("blocks".into(), S::NAME.into()), blocks as f64);
}

fn main() {
    let quick = std::env::var_os("PT_BENCH_QUICK").is_some_and(|v| v != "0");
    let z = if quick { Sizes::QUICK } else { Sizes::FULL };
    let (warm, meas) = if quick { (0.3, 0.6) } else { (1.0, 2.0) };
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs_f64(warm))
        .measurement_time(Duration::from_secs_f64(meas))
        .sample_size(10)
        .without_plots()
        .configure_from_args();
    let pool = Pool::leak(8192);

    // Table pages: ours must use exactly the minimum.
    let mut tables = Results::new();
    for_each_subject!(check_tables, pool, &z, &mut tables);
    let (min_pages, min_blocks) = work::min_tables(&z);
    tables.insert(("pages".into(), "minimum".into()), min_pages as f64);
    tables.insert(("blocks".into(), "minimum".into()), min_blocks as f64);
    for who in ["armv8", "armv7"] {
        assert_eq!(
            tables[&("pages".into(), who.into())],
            min_pages as f64,
            "{who}"
        );
        assert_eq!(
            tables[&("blocks".into(), who.into())],
            min_blocks as f64,
            "{who}"
        );
    }
    report::save(&tables, "tables.tsv");

    let mut floor_buf = vec![0u64; Op::MapPages.units(&z).max(Op::MapBlocks.units(&z)) as usize];
    for op in Op::ALL {
        let mut g = c.benchmark_group(op.id());
        g.throughput(Throughput::Elements(op.units(&z)));
        for_each_subject!(bench_subject, &mut g, pool, op, &z);
        if let Some(n) = work::floor_units(op, &z) {
            let buf = &mut floor_buf[..n as usize];
            g.bench_function(FLOOR, |b| {
                b.iter_custom(|iters| {
                    let t = time_floor(buf, op, iters);
                    record((op.id(), FLOOR), t, iters, n);
                    t
                })
            });
        }
        g.finish();
    }
    let ns = medians();
    if !ns.is_empty() {
        report::save(&ns, "ns.tsv");
    }

    // ns per page against range size, mapping as pages.
    let sizes: &[u64] = if quick {
        &[2 << 20, 8 << 20, 64 << 20]
    } else {
        &[2 << 20, 8 << 20, 64 << 20, 256 << 20, 1 << 30]
    };
    let mut g = c.benchmark_group("map_4k_by_size");
    for &sz in sizes {
        let zs = Sizes { pages: sz, ..z };
        g.throughput(Throughput::Elements(sz / PAGE));
        macro_rules! one {
            ($s:ty) => {{
                g.bench_with_input(BenchmarkId::new(<$s>::NAME, sz >> 20), &zs, |b, zs| {
                    b.iter_custom(|iters| {
                        let t = time_op::<$s>(pool, Op::MapPages, zs, iters);
                        record((&sz.to_string(), <$s>::NAME), t, iters, sz / PAGE);
                        t
                    })
                });
            }};
        }
        one!(pt_bench::subjects::OursV8);
        one!(pt_bench::subjects::OursV7);
        one!(pt_bench::subjects::AArch64Paging);
        one!(pt_bench::subjects::PageTableGeneric);
        one!(pt_bench::subjects::PageTableMultiarch);
        let buf = &mut floor_buf[..(sz / PAGE) as usize];
        g.bench_with_input(BenchmarkId::new(FLOOR, sz >> 20), &(), |b, _| {
            b.iter_custom(|iters| {
                let t = time_floor(buf, Op::MapPages, iters);
                record((&sz.to_string(), FLOOR), t, iters, sz / PAGE);
                t
            })
        });
    }
    g.finish();
    c.final_summary();

    let all = medians();
    let by_size: Results = all
        .into_iter()
        .filter(|((k, _), _)| k.parse::<u64>().is_ok())
        .collect();
    if !by_size.is_empty() {
        report::save(&by_size, "by_size.tsv");
    }
    println!("\n{}", report::write_all(&z));
    println!("(written to {})", report::out_dir().display());
}
