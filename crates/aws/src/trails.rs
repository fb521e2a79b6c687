//! The trails' configuration, read live: `DescribeTrails`, `GetEventSelectors` and
//! `GetTrailStatus`, turned into the AWS CLI's JSON so that `shrink plan --live` and
//! `--trail-config FILE` are read by the same code and cannot drift apart.
//!
//! What is read here is what proves that a call the role did not make would have been
//! recorded. A trail whose selectors or status cannot be read is still returned (without
//! them): it then proves nothing, and the reason is kept for the caller to report.

use serde_json::{json, Value};

use crate::error::AwsError;
use crate::live::{call_error, Session};

/// The configuration of every trail a session sees, in the CLI's shapes.
#[derive(Debug, Default)]
pub struct LiveTrails {
    /// `describe-trails` output (`{"trailList": […]}`), shadow copies of organisation and
    /// multi-region trails included.
    pub describe: Value,
    /// One `get-event-selectors` output per trail read.
    pub selectors: Vec<Value>,
    /// (trail ARN, `get-trail-status` output).
    pub status: Vec<(String, Value)>,
    /// Trails whose selectors or status could not be read, with the error.
    pub unread: Vec<(String, String)>,
}

fn strings(v: &[String]) -> Value {
    json!(v)
}

fn epoch_seconds(t: &aws_smithy_types::DateTime) -> Value {
    json!(t.secs())
}

impl Session {
    /// Read every trail this session's account sees (its own region's view, which includes
    /// multi-region and organisation trails homed elsewhere), its selectors and its status.
    pub fn trails(&self) -> Result<LiveTrails, AwsError> {
        self.block_on(async {
            let ct = aws_sdk_cloudtrail::Client::new(self.sdk_config());
            let described = ct
                .describe_trails()
                .include_shadow_trails(true)
                .send()
                .await
                .map_err(|e| call_error("cloudtrail:DescribeTrails", e))?;
            let mut out = LiveTrails::default();
            let mut list = Vec::new();
            for t in described.trail_list() {
                let Some(arn) = t.trail_arn() else { continue };
                list.push(json!({
                    "Name": t.name(),
                    "TrailARN": arn,
                    "HomeRegion": t.home_region(),
                    "IsMultiRegionTrail": t.is_multi_region_trail(),
                    "IsOrganizationTrail": t.is_organization_trail(),
                    "IncludeGlobalServiceEvents": t.include_global_service_events(),
                    "HasCustomEventSelectors": t.has_custom_event_selectors(),
                    "HasInsightSelectors": t.has_insight_selectors(),
                }));
                match ct.get_event_selectors().trail_name(arn).send().await {
                    Ok(sel) => out.selectors.push(selectors_json(arn, &sel)),
                    Err(e) => out.unread.push((
                        arn.to_owned(),
                        call_error("cloudtrail:GetEventSelectors", e).to_string(),
                    )),
                }
                match ct.get_trail_status().name(arn).send().await {
                    Ok(st) => out.status.push((
                        arn.to_owned(),
                        json!({
                            "IsLogging": st.is_logging(),
                            "StartLoggingTime": st.start_logging_time().map(epoch_seconds),
                            "StopLoggingTime": st.stop_logging_time().map(epoch_seconds),
                            "LatestDeliveryError": st.latest_delivery_error(),
                            "LatestDeliveryTime": st.latest_delivery_time().map(epoch_seconds),
                        }),
                    )),
                    Err(e) => out.unread.push((
                        arn.to_owned(),
                        call_error("cloudtrail:GetTrailStatus", e).to_string(),
                    )),
                }
            }
            out.describe = json!({ "trailList": list });
            Ok(out)
        })
    }
}

/// `get-event-selectors` output for one trail: basic or advanced selectors, as AWS returns
/// them (never both).
fn selectors_json(
    arn: &str,
    sel: &aws_sdk_cloudtrail::operation::get_event_selectors::GetEventSelectorsOutput,
) -> Value {
    let mut v = json!({ "TrailARN": sel.trail_arn().unwrap_or(arn) });
    if !sel.event_selectors().is_empty() {
        v["EventSelectors"] = sel
            .event_selectors()
            .iter()
            .map(|s| {
                json!({
                    "ReadWriteType": s.read_write_type().map(|r| r.as_str()),
                    "IncludeManagementEvents": s.include_management_events(),
                    "DataResources": s.data_resources().iter().map(|d| json!({
                        "Type": d.r#type(),
                        "Values": strings(d.values()),
                    })).collect::<Vec<_>>(),
                    "ExcludeManagementEventSources": strings(s.exclude_management_event_sources()),
                })
            })
            .collect();
    }
    if !sel.advanced_event_selectors().is_empty() {
        v["AdvancedEventSelectors"] = sel
            .advanced_event_selectors()
            .iter()
            .map(|s| {
                json!({
                    "Name": s.name(),
                    "FieldSelectors": s.field_selectors().iter().map(|f| json!({
                        "Field": f.field(),
                        "Equals": strings(f.equals()),
                        "StartsWith": strings(f.starts_with()),
                        "EndsWith": strings(f.ends_with()),
                        "NotEquals": strings(f.not_equals()),
                        "NotStartsWith": strings(f.not_starts_with()),
                        "NotEndsWith": strings(f.not_ends_with()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    v
}
