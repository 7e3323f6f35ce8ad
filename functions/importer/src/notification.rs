//! The S3 event notification an imports-queue message carries, read leniently: only the
//! event name, the bucket, the key and the size. (`aws_lambda_events`' `S3Event` insists
//! on fields moto leaves out — `userIdentity`, `requestParameters`, `sequencer` — and we
//! need none of them.)

use serde_json::Value;
use shared::imports::keys::decode_event_key;

/// An object S3 reports as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// Decoded (see `shared::imports::keys::decode_event_key`).
    pub key: String,
    pub size: Option<u64>,
}

/// The objects created that a message body reports. S3's `s3:TestEvent` (sent when the
/// notification is configured) and other event names report none; a body that is not an
/// S3 notification is an error, with what was wrong.
pub fn objects_created(body: &str) -> Result<Vec<ObjectCreated>, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if value["Event"] == "s3:TestEvent" {
        return Ok(Vec::new());
    }
    let records = value["Records"]
        .as_array()
        .ok_or("no Records: not an S3 event notification")?;
    let mut out = Vec::new();
    for record in records {
        let name = record["eventName"].as_str().unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            continue;
        }
        let bucket = record["s3"]["bucket"]["name"]
            .as_str()
            .ok_or("a record without s3.bucket.name")?;
        let raw_key = record["s3"]["object"]["key"]
            .as_str()
            .ok_or("a record without s3.object.key")?;
        let key = decode_event_key(raw_key)
            .ok_or_else(|| format!("the key {raw_key} does not decode to UTF-8"))?;
        out.push(ObjectCreated {
            bucket: bucket.to_owned(),
            key,
            size: record["s3"]["object"]["size"].as_u64(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moto_record_without_aws_only_fields_parses_and_its_key_decodes() {
        let body = include_str!("../../../events/sqs-s3-object-created.json");
        let event: Value = serde_json::from_str(body).unwrap();
        let inner = event["Records"][0]["body"].as_str().unwrap();
        assert_eq!(
            objects_created(inner).unwrap(),
            [ObjectCreated {
                bucket: "collectpro-imports".into(),
                key: "imports/01JD3Q2W5Z8XKQ4M0VYB6N7T1R.csv".into(),
                size: Some(1024),
            }]
        );
        let moto = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b","arn":"arn:aws:s3:::b"},"object":{"key":"a%2Fb+c.csv","size":3}}}]}"#;
        assert_eq!(objects_created(moto).unwrap()[0].key, "a/b c.csv");
    }

    #[test]
    fn test_events_and_other_event_names_report_nothing() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-01T00:00:00Z","Bucket":"b"}"#;
        assert_eq!(objects_created(test).unwrap(), []);
        let removed = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{}}]}"#;
        assert_eq!(objects_created(removed).unwrap(), []);
    }

    #[test]
    fn bodies_that_are_not_notifications_are_errors() {
        assert!(objects_created("nope").is_err());
        assert!(objects_created("{}").is_err());
        let keyless = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}"#;
        assert!(objects_created(keyless)
            .unwrap_err()
            .contains("s3.object.key"));
    }
}
