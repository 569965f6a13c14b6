//! `torchat-sim`: runs simulator scenarios and the delivery/transmissions sweep.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use torchat_sim::{sweep, sync_sweep, Options, Scenario, Sim};

#[derive(Parser)]
#[command(
    name = "torchat-sim",
    about = "Deterministic simulator for torchat group chat"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario file (every seed it lists); exit status 1 on an invariant violation.
    Run {
        /// The scenario (TOML).
        scenario: PathBuf,
        /// Print the reports as JSON (an array, one per seed).
        #[arg(long)]
        json: bool,
        /// Run only this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print a trace of group lines and group events (to stderr).
        #[arg(long)]
        trace: bool,
    },
    /// Run random scenarios (faults, crashes, forgers, leaves) and report invariant
    /// violations; exit status 1 if any.
    Explore {
        /// First seed.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Number of seeds.
        #[arg(long, default_value_t = 100)]
        runs: u64,
        /// Leave out members leaving the group.
        #[arg(long)]
        no_leaves: bool,
        /// Leave out crashes.
        #[arg(long)]
        no_crashes: bool,
        /// No latency jitter.
        #[arg(long)]
        no_jitter: bool,
        /// Print the scenario of this seed as TOML and exit.
        #[arg(long)]
        show: Option<u64>,
    },
    /// Compare plain group chat and the redundancy extension; write plots and tables.
    Sweep {
        /// Output directory.
        #[arg(long, default_value = "docs/sim")]
        out: PathBuf,
        /// Seeds per point.
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        /// Group sizes (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "10,30,100")]
        sizes: Vec<usize>,
        /// Worker threads (default: available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Small and quick: sizes 5,10, two seeds (for a smoke test).
        #[arg(long)]
        quick: bool,
    },
    /// The torchat_sync sweep: cost per message against group size with and without the
    /// extension, and delivery under churn.
    SyncSweep {
        /// Output directory.
        #[arg(long, default_value = "docs/sim")]
        out: PathBuf,
        /// Group sizes (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "3,5,10,20,30,50,100")]
        sizes: Vec<usize>,
        /// Seeds of the churn scenarios.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Worker threads (default: available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Skip the churn scenarios.
        #[arg(long)]
        no_churn: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Run {
            scenario,
            json,
            seed,
            trace,
        } => {
            let sc = match Scenario::load(&scenario) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let seeds = seed.map_or_else(|| sc.seeds.clone(), |s| vec![s]);
            let mut reports = Vec::new();
            for s in seeds {
                let opts = Options {
                    trace,
                    ..Options::default()
                };
                match Sim::new(&sc, s, opts) {
                    Ok(mut sim) => {
                        sim.run_until(f64::INFINITY);
                        for line in sim.trace() {
                            eprintln!("{line}");
                        }
                        reports.push(sim.report());
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
            }
            if json {
                match serde_json::to_string_pretty(&reports) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                for r in &reports {
                    print!("{}", r.to_text());
                }
            }
            if reports.iter().any(|r| !r.violations.is_empty()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Explore {
            from,
            runs,
            no_leaves,
            no_crashes,
            no_jitter,
            show,
        } => {
            let cfg = torchat_sim::explore::ExploreConfig {
                leaves: !no_leaves,
                crashes: !no_crashes,
                jitter: !no_jitter,
                ..Default::default()
            };
            if let Some(seed) = show {
                let sc = torchat_sim::explore::scenario(seed, &cfg);
                match toml::to_string(&sc) {
                    Ok(t) => print!("{t}"),
                    Err(e) => eprintln!("{e}"),
                }
                return ExitCode::SUCCESS;
            }
            let mut bad = 0;
            for seed in from..from.saturating_add(runs) {
                let sc = torchat_sim::explore::scenario(seed, &cfg);
                let report = match torchat_sim::run(&sc, seed) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("seed {seed}: {e}");
                        continue;
                    }
                };
                if !report.violations.is_empty() {
                    bad += 1;
                    println!("seed {seed} ({} nodes):", sc.nodes);
                    for v in &report.violations {
                        println!("  {v}");
                    }
                }
            }
            println!("{bad} of {runs} random scenarios violated an invariant");
            if bad > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Sweep {
            out,
            seeds,
            sizes,
            threads,
            quick,
        } => {
            let mut cfg = sweep::SweepConfig {
                sizes,
                seeds: (1..=seeds).collect(),
                ..Default::default()
            };
            if quick {
                cfg.sizes = vec![5, 10];
                cfg.seeds = vec![1, 2];
                cfg.tx_sizes = vec![3, 5, 10];
            }
            if let Some(t) = threads {
                cfg.threads = t;
            }
            let started = std::time::Instant::now();
            let result = sweep::run(&cfg, &|line| eprintln!("{line}"));
            if let Err(e) = sweep::write(&result, &cfg, &out) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            print!("{}", sweep::markdown(&result, &cfg));
            eprintln!(
                "sweep done in {:.1} s; wrote {}/{{delivery.svg,transmissions.svg,sweep.md,sweep.csv,transmissions.csv}}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Cmd::SyncSweep {
            out,
            sizes,
            seeds,
            threads,
            no_churn,
        } => {
            let mut cfg = sync_sweep::SyncSweepConfig {
                sizes,
                seeds: (1..=seeds).collect(),
                churn: !no_churn,
                ..Default::default()
            };
            if let Some(t) = threads {
                cfg.threads = t;
            }
            let started = std::time::Instant::now();
            let result = sync_sweep::run(&cfg, &|line| eprintln!("{line}"));
            if let Err(e) = sync_sweep::write(&result, &cfg, &out) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            print!("{}", sync_sweep::markdown(&result, &cfg));
            eprintln!(
                "sync sweep done in {:.1} s; wrote {}/{{sync.md,sync-cost.csv,sync-*.svg}}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
            ExitCode::SUCCESS
        }
    }
}
