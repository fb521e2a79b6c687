//! `credwarden-fuzz TARGET|all SECONDS [--seed N] [--runs N] [--seeds PATH]…`
//! `credwarden-fuzz --replay TARGET FILE…` runs saved inputs once (crash reproduction).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use credwarden_fuzz::engine::{self, Options, Report};
use credwarden_fuzz::targets::{self, TARGETS};

const USAGE: &str = "usage: credwarden-fuzz TARGET|all SECONDS [--seed N] [--runs N] \
[--budget-ms N] [--seeds PATH]... [--crashes DIR]
       credwarden-fuzz --replay TARGET FILE...
       credwarden-fuzz --list";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("credwarden-fuzz: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> Result<T, String> {
    v.and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number"))
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("--list") => {
            for t in TARGETS {
                println!("{:<12} {}", t.name, t.about);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some("--replay") => return replay(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let name = &args[0];
    let seconds: f64 = number("SECONDS", args.get(1))?;
    let mut opts = Options {
        seconds,
        runs: None,
        seed: 1,
        budget: Duration::from_secs(1),
        crash_dir: PathBuf::from("target/fuzz-crashes"),
        seed_paths: Vec::new(),
    };
    let mut i = 2;
    while i < args.len() {
        let v = args.get(i + 1);
        match args[i].as_str() {
            "--seed" => opts.seed = number("--seed", v)?,
            "--runs" => opts.runs = Some(number("--runs", v)?),
            "--budget-ms" => opts.budget = Duration::from_millis(number("--budget-ms", v)?),
            "--seeds" => opts
                .seed_paths
                .push(PathBuf::from(v.ok_or("--seeds needs a path")?)),
            "--crashes" => opts.crash_dir = PathBuf::from(v.ok_or("--crashes needs a folder")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 2;
    }
    let chosen: Vec<&'static targets::Target> = if name == "all" {
        TARGETS.iter().collect()
    } else {
        vec![targets::find(name).ok_or_else(|| format!("no target {name:?} (try --list)"))?]
    };
    engine::install_panic_hook();
    let mut reports = Vec::new();
    for t in chosen {
        let mut dirs = credwarden_fuzz::seed_dirs(t.name);
        dirs.extend(opts.seed_paths.iter().cloned());
        let seeds = engine::load_seeds(&dirs, t.max_len);
        eprintln!(
            "fuzz {}: {} seeds, {}, seed {}",
            t.name,
            seeds.len(),
            match opts.runs {
                Some(n) => format!("{n} inputs"),
                None => format!("{}s", opts.seconds),
            },
            opts.seed
        );
        let report = engine::campaign(t, seeds, &opts);
        let failed = report.failure.is_some();
        print_report(&report);
        reports.push(report);
        if failed {
            break;
        }
    }
    println!("\ninputs tried per target:");
    for r in &reports {
        println!(
            "  {:<12} {:>10} inputs in {:>6.1}s ({:>7.0}/s), {} outcomes, corpus {}{}",
            r.target,
            r.inputs,
            r.elapsed.as_secs_f64(),
            r.inputs as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.outcomes,
            r.corpus,
            if r.failure.is_some() { "  FAILED" } else { "" }
        );
    }
    if reports.iter().any(|r| r.failure.is_some()) {
        // A hung worker thread may still be running: leave without waiting for it.
        std::process::exit(1);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    if let Some(f) = &r.failure {
        eprintln!(
            "fuzz {}: {} after {} inputs: {}",
            r.target, f.kind, r.inputs, f.message
        );
        match &f.saved {
            Some(p) => eprintln!("  input ({} bytes) saved to {}", f.input.len(), p.display()),
            None => eprintln!("  input ({} bytes) could not be saved", f.input.len()),
        }
        let preview: String = String::from_utf8_lossy(&f.input)
            .chars()
            .take(300)
            .collect();
        eprintln!("  input starts: {preview:?}");
    }
}

fn replay(args: &[String]) -> Result<ExitCode, String> {
    let name = args.first().ok_or("--replay needs a target")?;
    let t = targets::find(name).ok_or_else(|| format!("no target {name:?}"))?;
    if args.len() < 2 {
        return Err("--replay needs input files".into());
    }
    engine::install_panic_hook();
    let mut failed = false;
    for path in &args[1..] {
        let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let started = std::time::Instant::now();
        match engine::run_one(t, &data) {
            Ok(o) => println!("{path}: ok (outcome {o:016x}) in {:?}", started.elapsed()),
            Err(msg) => {
                failed = true;
                println!("{path}: CRASH: {msg}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
