//! `credwarden baseline build`: learn what accounts and principals normally do from logs you
//! already have, instead of waiting out the learning window. Everything in the given paths
//! becomes the baseline of `recon-call`, `new-role-behaviour`, `unused-service` and
//! `unused-region`, stored in the `--state` file that `detect --state` then continues from.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use cloudtrail::DeliveryDays;
use detect::{Detector, Engine, Novelty, NoveltyConfig, NoveltyDetector};
use store::Store;

use run::{run_with_hooks, ClosureHooks};

#[derive(Clone, Debug, clap::Args)]
pub struct BaselineArgs {
    /// CloudTrail files or folders to learn from (any input form `detect` reads).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The state file to write the baselines into (created if missing).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Decoding threads (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

pub fn build(args: &BaselineArgs, err: &mut dyn Write) -> Result<()> {
    let _lock = run::lock_state(&args.state)?;
    let mut store = Store::open(&args.state)?;
    // Learning never ends during the build: nothing seen here can be "new".
    let learning = NoveltyConfig {
        learning_ms: i64::MAX / 4,
        ..Default::default()
    };
    let detectors: Vec<Box<dyn Detector>> = [
        Novelty::ReconCall,
        Novelty::NewRoleBehaviour,
        Novelty::UnusedService,
        Novelty::UnusedRegion,
    ]
    .into_iter()
    .map(|k| Box::new(NoveltyDetector::new(k, learning.clone())) as Box<dyn Detector>)
    .collect();
    let mut engine = Engine::new(detectors);
    // What earlier runs learned is kept and added to.
    run::restore(&store, &mut engine)?;
    // One delivery day at a time (memory stays that of a day, however long the history).
    let mut days = DeliveryDays::walk(&args.paths)?;
    let mut summary = run::RunSummary::default();
    while let Some(sources) = days.next_day()? {
        let mut hooks = ClosureHooks(
            |_: &detect::Finding| -> Result<()> { Ok(()) },
            |report: &cloudtrail::FileReport| {
                for e in &report.errors {
                    let _ = writeln!(err, "error: {e}");
                }
            },
        );
        let last = days.is_done();
        summary.absorb(run_with_hooks(
            &sources,
            &mut engine,
            args.threads,
            &mut hooks,
            last,
        )?);
    }
    engine.mark_learned();
    let mut states = run::durable::saved_states(&engine);
    states.retain(|(n, _, _)| *n != detect::engine::ENGINE_STATE);
    store.checkpoint(&states, &[], &[])?;
    writeln!(
        err,
        "credwarden: baselines of {} learned from {} file(s), {} records ({} input errors) into {}",
        states.iter().map(|s| s.0).collect::<Vec<_>>().join(", "),
        summary.files,
        summary.records,
        summary.input_errors,
        args.state.display()
    )?;
    Ok(())
}
