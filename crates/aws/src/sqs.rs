//! CloudTrail as production consumers read it: an SQS queue of notifications that new
//! delivery files are in the bucket.
//!
//! A message is one of: an S3 event notification (`Records[].s3`, keys URL-encoded), the same
//! wrapped by SNS (`Type: Notification`, `Message` holds it as a string), an EventBridge
//! "Object Created" event (`detail.bucket`, `detail.object`), CloudTrail's own SNS
//! notification (`s3Bucket`, `s3ObjectKey: [...]`), or S3's `s3:TestEvent`.
//! [`parse_notification`] says which; a message it cannot read is left to the queue's redrive
//! policy by the caller, never dropped.

use serde_json::Value;

use crate::error::AwsError;
use crate::live::{call_error, sdk_config, LiveOptions};

/// An object a notification announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifiedObject {
    pub bucket: String,
    pub key: String,
    /// 0 when the notification does not say (CloudTrail's own notifications).
    pub size: u64,
    /// Empty when the notification does not say.
    pub etag: String,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    Objects(Vec<NotifiedObject>),
    /// S3's `s3:TestEvent`, sent when notifications are configured.
    Test,
    /// Not a notification this reader knows; the reason names what is missing.
    Unreadable(String),
}

/// Read one message body.
pub fn parse_notification(body: &str) -> Notification {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Notification::Unreadable("not JSON".into());
    };
    parse_value(&v, 0)
}

fn parse_value(v: &Value, depth: u8) -> Notification {
    if v["Event"] == "s3:TestEvent" {
        return Notification::Test;
    }
    // SNS: the notification is a JSON string in `Message`.
    if v["Type"] == "Notification" {
        let Some(inner) = v["Message"].as_str() else {
            return Notification::Unreadable("an SNS notification without a Message".into());
        };
        if depth > 2 {
            return Notification::Unreadable("notifications nested too deep".into());
        }
        return match serde_json::from_str::<Value>(inner) {
            Ok(inner) => parse_value(&inner, depth + 1),
            Err(_) => Notification::Unreadable("the SNS Message is not JSON".into()),
        };
    }
    // CloudTrail's own notification of a delivery.
    if let (Some(bucket), Some(keys)) = (v["s3Bucket"].as_str(), v["s3ObjectKey"].as_array()) {
        let objects = keys
            .iter()
            .filter_map(Value::as_str)
            .map(|k| NotifiedObject {
                bucket: bucket.to_owned(),
                key: k.to_owned(),
                size: 0,
                etag: String::new(),
            })
            .collect();
        return Notification::Objects(objects);
    }
    // EventBridge "Object Created".
    if v["source"] == "aws.s3" {
        if v["detail-type"] != "Object Created" {
            return Notification::Objects(Vec::new());
        }
        let d = &v["detail"];
        return match (d["bucket"]["name"].as_str(), d["object"]["key"].as_str()) {
            (Some(bucket), Some(key)) => Notification::Objects(vec![NotifiedObject {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                size: d["object"]["size"].as_u64().unwrap_or(0),
                etag: d["object"]["etag"].as_str().unwrap_or("").to_owned(),
            }]),
            _ => Notification::Unreadable("an EventBridge S3 event without bucket or key".into()),
        };
    }
    // S3 event notification.
    if let Some(records) = v["Records"].as_array() {
        let mut objects = Vec::new();
        for r in records {
            if r["eventSource"] != "aws:s3" {
                return Notification::Unreadable("a Records entry that is not from aws:s3".into());
            }
            if !r["eventName"]
                .as_str()
                .is_some_and(|n| n.starts_with("ObjectCreated:"))
            {
                continue;
            }
            let s3 = &r["s3"];
            let (Some(bucket), Some(key)) =
                (s3["bucket"]["name"].as_str(), s3["object"]["key"].as_str())
            else {
                return Notification::Unreadable("an S3 event without bucket or key".into());
            };
            // S3 event keys are form-encoded.
            let Some(key) = credwarden_core::encoding::form_decode(key) else {
                return Notification::Unreadable("an S3 event key that is not URL-encoded".into());
            };
            objects.push(NotifiedObject {
                bucket: bucket.to_owned(),
                key,
                size: s3["object"]["size"].as_u64().unwrap_or(0),
                etag: s3["object"]["eTag"].as_str().unwrap_or("").to_owned(),
            });
        }
        return Notification::Objects(objects);
    }
    Notification::Unreadable("neither an S3, SNS, EventBridge nor CloudTrail notification".into())
}

/// One received message.
#[derive(Clone, Debug)]
pub struct QueueMessage {
    pub id: String,
    pub body: String,
    pub receipt: String,
}

/// A queue, read with long polling.
pub struct SqsQueue {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn connect(opts: &LiveOptions, url: &str) -> Result<SqsQueue, AwsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AwsError::Runtime)?;
        let config = rt.block_on(sdk_config(opts))?;
        Ok(SqsQueue {
            client: aws_sdk_sqs::Client::new(&config),
            rt,
            url: url.to_owned(),
        })
    }

    /// Up to 10 messages, waiting up to `wait_seconds` for the first (long polling); each is
    /// invisible to other consumers for `visibility_seconds`.
    pub fn receive(
        &self,
        wait_seconds: i32,
        visibility_seconds: i32,
    ) -> Result<Vec<QueueMessage>, AwsError> {
        self.rt.block_on(async {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait_seconds)
                .visibility_timeout(visibility_seconds)
                .send()
                .await
                .map_err(|e| call_error("sqs:ReceiveMessage", e))?;
            Ok(out
                .messages()
                .iter()
                .filter_map(|m| {
                    Some(QueueMessage {
                        id: m.message_id()?.to_owned(),
                        body: m.body().unwrap_or("").to_owned(),
                        receipt: m.receipt_handle()?.to_owned(),
                    })
                })
                .collect())
        })
    }

    /// Delete messages (their work is committed). Batches of 10; a failure names how many.
    pub fn delete(&self, receipts: &[String]) -> Result<(), AwsError> {
        self.rt.block_on(async {
            for batch in receipts.chunks(10) {
                let entries = batch
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .build()
                            .map_err(|e| AwsError::Call {
                                operation: "sqs:DeleteMessageBatch",
                                message: e.to_string(),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| call_error("sqs:DeleteMessageBatch", e))?;
                if !out.failed().is_empty() {
                    return Err(AwsError::Call {
                        operation: "sqs:DeleteMessageBatch",
                        message: format!("{} message(s) not deleted", out.failed().len()),
                    });
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bucket: &str, key: &str) -> Notification {
        Notification::Objects(vec![NotifiedObject {
            bucket: bucket.into(),
            key: key.into(),
            size: 0,
            etag: String::new(),
        }])
    }

    #[test]
    fn every_notification_form() {
        let s3 = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b"},"object":{"key":"AWSLogs/1/CloudTrail/us-east-1/a+b%3D.json.gz","size":12,"eTag":"e1"}}}]}"#;
        let parsed = parse_notification(s3);
        assert_eq!(
            parsed,
            Notification::Objects(vec![NotifiedObject {
                bucket: "b".into(),
                key: "AWSLogs/1/CloudTrail/us-east-1/a b=.json.gz".into(),
                size: 12,
                etag: "e1".into()
            }])
        );
        let sns = serde_json::json!({"Type": "Notification", "Message": s3}).to_string();
        assert_eq!(parse_notification(&sns), parsed);
        let trail = serde_json::json!({"Type": "Notification",
            "Message": r#"{"s3Bucket":"b","s3ObjectKey":["k1"]}"#})
        .to_string();
        assert_eq!(parse_notification(&trail), one("b", "k1"));
        let eb = r#"{"source":"aws.s3","detail-type":"Object Created",
            "detail":{"bucket":{"name":"b"},"object":{"key":"k 2","size":5,"etag":"e"}}}"#;
        assert!(matches!(parse_notification(eb), Notification::Objects(o) if o[0].key == "k 2"));
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(parse_notification(test), Notification::Test);
        for bad in [
            "nope",
            "{}",
            r#"{"Type":"Notification","Message":"{"}"#,
            r#"{"Records":[{"eventSource":"aws:sqs"}]}"#,
        ] {
            assert!(
                matches!(parse_notification(bad), Notification::Unreadable(_)),
                "{bad}"
            );
        }
    }
}
