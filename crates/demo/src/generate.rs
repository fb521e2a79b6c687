//! The generator: walks the demo's window one delivery slot at a time, launching and
//! refreshing instances, making the company's traffic and running the attacks due, and
//! hands each slot's records to the delivery writer once no more can arrive for it.
//! Generation streams: memory holds two slots of records, whatever `records` asks for.

use std::path::{Path, PathBuf};

use credwarden_core::EventTime;

use crate::attack::{self, ScheduledAttack};
use crate::company::{ci_key, Company, Fleet, CI_RUNNER_IP};
use crate::delivery::{slot_time, DeliveryWriter, FileSplit, SLOT_MS};
use crate::error::Result;
use crate::members::{members, Member, MEMBER_REGIONS};
use crate::record::{Call, RecordIds};
use crate::rng::Rng;
use crate::truth::{Novel, NoveltyTracker, TruthEntry};

/// The shortest window: every injected attack happens within it.
const MIN_SLOTS: u64 = 72;
/// At most this many records per slot; more records make a longer window, not a denser one,
/// so memory and detector state stay flat as the data grows.
const MAX_PER_SLOT: u64 = 2_500;
/// The slot in which an operator moves an Elastic IP.
const ELASTIC_IP_SLOT: u64 = 36;

/// What the data set looks like on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    /// The company's three accounts alone, `AWSLogs/<account>/…`, up to 2,500 records a
    /// slot in files of up to 500: few streams, skewed file sizes.
    #[default]
    Compact,
    /// An organisation trail as a real organisation's bucket holds it:
    /// `AWSLogs/<org id>/<account>/…`, the company plus member accounts in one to three
    /// regions each, up to 6,000 records a slot (a million records is about 14 hours) in
    /// files of a few hundred (~230 on average: busy streams cut into files of 260–700,
    /// quiet ones small), records of ~1.3 kB with request parameters, response elements,
    /// resources and TLS details.
    Org,
}

impl Shape {
    /// Every shape, by name.
    pub const ALL: [Shape; 2] = [Shape::Compact, Shape::Org];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Compact => "compact",
            Shape::Org => "org",
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shape, String> {
        Shape::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| format!("unknown shape {s:?} (compact or org)"))
    }
}

/// The organisation shape's records per slot, at most.
const ORG_PER_SLOT: u64 = 6_000;
/// The organisation shape's member accounts, beside the company's three.
const ORG_MEMBERS: usize = 5;
/// The organisation's id, in its trail's S3 keys.
pub const ORG_ID: &str = "o-7rq2xk4mzd";

/// What [`generate`] wrote.
#[derive(Debug)]
pub struct Generated {
    /// Records written (duplicate deliveries included).
    pub records: u64,
    /// Delivery files written.
    pub files: u64,
    /// Digest files written.
    pub digest_files: u64,
    /// Bytes of gzip written.
    pub gz_bytes: u64,
    /// Every finding expected on the data.
    pub truth: Vec<TruthEntry>,
    /// The `AWSLogs` folder.
    pub logs: PathBuf,
}

/// The state of a generation: the company, the attacks, the writer and the truth so far.
pub(crate) struct Generator {
    pub(crate) company: Company,
    pub(crate) attacks: Vec<ScheduledAttack>,
    pub(crate) out: DeliveryWriter,
    pub(crate) rng: Rng,
    pub(crate) truth: Vec<TruthEntry>,
    buf: String,
    novelty: NoveltyTracker,
    /// The organisation shape's member accounts (none in the compact shape).
    pub(crate) members: Vec<Member>,
}

impl Generator {
    /// Write a record. Returns which novelty detectors must report it.
    pub(crate) fn emit(&mut self, call: &Call<'_>) -> Novel {
        let novel = self.novelty.observe(call);
        self.buf.clear();
        call.write_json(&mut self.buf);
        let region: &'static str = match call.api.source {
            "iam.amazonaws.com" => "us-east-1",
            _ => region_static(call.place.region),
        };
        self.out
            .add(call.place.account, region, call.time, self.buf.clone());
        novel
    }

    /// Record the truth entries for the novelty findings an attack's calls must produce,
    /// alongside the attack's main entry (the last one pushed).
    pub(crate) fn expect_novelty(&mut self, novel: Novel) {
        let main = self.truth.last().expect("the attack's entry").clone();
        self.truth.extend(novel.entries(&main));
    }

    /// A random instant in delivery slot `slot`.
    pub(crate) fn time_in_slot(&mut self, slot: u64) -> EventTime {
        slot_time(slot).plus_millis(self.rng.below(SLOT_MS as u64) as i64)
    }

    /// A new record's event id and request id.
    pub(crate) fn fresh_ids(&mut self) -> RecordIds {
        RecordIds {
            event_id: self.rng.uuid(),
            request_id: self.rng.uuid(),
        }
    }
}

/// The trail a record is delivered in: the region, as a static name.
fn region_static(r: &str) -> &'static str {
    MEMBER_REGIONS
        .iter()
        .copied()
        .find(|x| *x == r)
        .unwrap_or("us-east-1")
}

/// Generate about `records` records into `dir` (logs under `dir/AWSLogs`), in the compact
/// shape. The same seed writes the same bytes.
pub fn generate(dir: &Path, seed: u64, records: u64) -> Result<Generated> {
    generate_shaped(dir, seed, records, Shape::Compact)
}

/// Generate about `records` records into `dir` in `shape`. The same seed and shape write
/// the same bytes; both shapes hold the same company and attacks, and the truth is made
/// as the data is, so it holds for either.
pub fn generate_shaped(dir: &Path, seed: u64, records: u64, shape: Shape) -> Result<Generated> {
    let mut world_rng = Rng::new(seed);
    let mut company = Company::build(&mut world_rng);
    let attacks = attack::plan(&mut company, &mut world_rng);
    let per_slot_max = match shape {
        Shape::Compact => MAX_PER_SLOT,
        Shape::Org => ORG_PER_SLOT,
    };
    let slots = MIN_SLOTS.max(records.div_ceil(per_slot_max));
    let per_slot = (records / slots).max(1);
    // Refresh jitter and each instance's share of a slot's calls.
    let mut pace = world_rng.fork(2);
    let writer_rng = world_rng.fork(3);
    let (org, split, member_list) = match shape {
        Shape::Compact => (None, FileSplit::Max, Vec::new()),
        // Drawn after every compact draw, so the company is the same in both shapes.
        Shape::Org => (
            Some(ORG_ID),
            FileSplit::Spread,
            members(&mut world_rng.fork(5), ORG_MEMBERS),
        ),
    };
    // The members' share of a slot: the company keeps the compact shape's density.
    let member_budget = if member_list.is_empty() {
        0
    } else {
        per_slot * 2 / 5
    };
    let company_per_slot = per_slot - member_budget;
    let mut g = Generator {
        company,
        attacks,
        out: DeliveryWriter::new(dir, writer_rng, org, split),
        rng: pace.fork(4),
        truth: Vec::new(),
        buf: String::with_capacity(4096),
        novelty: NoveltyTracker::default(),
        members: member_list,
    };
    for slot in 0..slots {
        let slot_end = slot_time(slot + 1);
        for ix in 0..g.company.instances.len() {
            let inst = &g.company.instances[ix];
            if !inst.launched && inst.launch < slot_end {
                g.launch(ix);
            }
            while g.company.instances[ix].launched
                && g.company.instances[ix].next_refresh < slot_end
            {
                let at = g.company.instances[ix].next_refresh;
                g.issue_instance_credentials(ix, at.max(slot_time(slot)));
                g.company.instances[ix].next_refresh =
                    at.plus_millis(EventTime::HOUR + (pace.below(120) as i64 - 60) * 1000);
            }
        }
        let active: Vec<usize> = (0..g.company.instances.len())
            .filter(|&i| {
                let inst = &g.company.instances[i];
                inst.launched && inst.fleet != Fleet::Idle && inst.launch < slot_time(slot)
            })
            .collect();
        let instance_budget = company_per_slot * 7 / 10;
        let per_instance = instance_budget as f64 / active.len().max(1) as f64;
        for &ix in &active {
            let n = per_instance.floor() as u64 + u64::from(pace.chance(per_instance.fract()));
            // An instance's calls in event-time order, so "its first call through the NAT" is
            // first by event time too.
            let mut times: Vec<EventTime> = (0..n).map(|_| g.time_in_slot(slot)).collect();
            times.sort();
            for t in times {
                g.instance_call(ix, t);
            }
        }
        g.background(slot, company_per_slot - instance_budget);
        if member_budget > 0 {
            g.member_traffic(slot, member_budget);
        }
        if slot == ELASTIC_IP_SLOT {
            g.move_elastic_ip(slot);
        }
        for a in 0..g.attacks.len() {
            if g.attacks[a].slot == slot {
                g.run_attack(a);
            }
        }
        // A record is delivered at most one slot late: everything for slots < `slot` is final.
        if slot >= 1 {
            g.out.flush(slot - 1)?;
        }
    }
    g.out.flush(u64::MAX - 1)?;
    // Each account's CI key is in daily use from the CI runner: expected, not an attack.
    for (i, account) in g.company.accounts.iter().enumerate() {
        g.truth.push(TruthEntry::static_key_in_use(
            account.id,
            ci_key(i),
            CI_RUNNER_IP,
        ));
    }
    Ok(Generated {
        records: g.out.records,
        files: g.out.files,
        digest_files: g.out.digests,
        gz_bytes: g.out.gz_bytes,
        truth: g.truth,
        logs: dir.join("AWSLogs"),
    })
}
