//! The functions' request log lines read back by request id, for the benchmarks that split a
//! request's time into DynamoDB's and ours (issue 17).
//!
//! Each API request's line (`shared::http::serve`) carries its `request_id` (the
//! `requestContext.requestId` the gateway made, which it also answers in the
//! `apigw-requestid` header), `duration_ms` (inside the function) and `dynamodb_ms` (its
//! DynamoDB calls' latencies added up). A client that timed the request end to end subtracts
//! `dynamodb_ms` and has what the gateway and the function cost on their own.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

/// What one request's log line says of its time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestTiming {
    /// The handler's time inside the function, milliseconds.
    pub duration_ms: f64,
    /// The request's DynamoDB calls, their latencies added up, milliseconds.
    pub dynamodb_ms: f64,
    pub dynamodb_calls: u32,
}

/// The request lines among `lines` (as a [`crate::runtime::LogCapture`] keeps them:
/// `[function] {json}`), by request id. Other lines are skipped.
pub fn request_timings(lines: &[String]) -> HashMap<String, RequestTiming> {
    lines
        .iter()
        .filter_map(|line| {
            let json = &line[line.find('{')?..];
            let record: Value = serde_json::from_str(json).ok()?;
            if record.get("message")?.as_str()? != "request" {
                return None;
            }
            let number = |field: &str| record.get(field).and_then(Value::as_f64);
            Some((
                record.get("request_id")?.as_str()?.to_owned(),
                RequestTiming {
                    duration_ms: number("duration_ms")?,
                    dynamodb_ms: number("dynamodb_ms")?,
                    dynamodb_calls: u32::try_from(record.get("dynamodb_calls")?.as_u64()?).ok()?,
                },
            ))
        })
        .collect()
}

/// Client-timed requests split by their log lines: per request, the time in DynamoDB, ours
/// (the client's latency minus it), and ours in two: the handler's own (its `duration_ms`
/// minus DynamoDB's) and what lies outside the handler (the latency minus `duration_ms`: the
/// gateway's HTTP and Runtime API hops, which on AWS are API Gateway's and Lambda's, the
/// runtime's event and response JSON, the request's log line). Each sorted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TimeSplit {
    pub dynamodb: Vec<Duration>,
    pub ours: Vec<Duration>,
    pub handler: Vec<Duration>,
    pub outside_handler: Vec<Duration>,
    /// DynamoDB calls per request (over the requests whose line was found).
    pub calls_per_request: f64,
}

impl TimeSplit {
    /// Splits `timed` (a request's latency as its client measured it, and the
    /// `apigw-requestid` it was answered with) by the request lines among `lines`; a request
    /// whose line is not there is left out.
    pub fn of(timed: &[(Duration, Option<String>)], lines: &[String]) -> Self {
        let timings = request_timings(lines);
        let mut split = Self::default();
        let mut calls = 0u32;
        for (latency, id) in timed {
            let Some(timing) = id.as_ref().and_then(|id| timings.get(id)) else {
                continue;
            };
            let ms = |ms: f64| Duration::from_secs_f64(ms.max(0.0) / 1000.0);
            let (in_dynamodb, in_handler) = (ms(timing.dynamodb_ms), ms(timing.duration_ms));
            split.dynamodb.push(in_dynamodb);
            split.ours.push(latency.saturating_sub(in_dynamodb));
            split.handler.push(in_handler.saturating_sub(in_dynamodb));
            split
                .outside_handler
                .push(latency.saturating_sub(in_handler));
            calls += timing.dynamodb_calls;
        }
        for times in [
            &mut split.dynamodb,
            &mut split.ours,
            &mut split.handler,
            &mut split.outside_handler,
        ] {
            times.sort();
        }
        split.calls_per_request = f64::from(calls) / split.dynamodb.len().max(1) as f64;
        split
    }

    /// The requests split (those whose line was found).
    pub fn len(&self) -> usize {
        self.dynamodb.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dynamodb.is_empty()
    }

    /// `q` (0..=1) of each part, milliseconds.
    pub fn quantile(&self, q: f64) -> SplitQuantile {
        let at = |sorted: &[Duration]| {
            let index = ((sorted.len().max(1) - 1) as f64 * q).round() as usize;
            sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        SplitQuantile {
            dynamodb: at(&self.dynamodb),
            ours: at(&self.ours),
            handler: at(&self.handler),
            outside_handler: at(&self.outside_handler),
        }
    }
}

/// One quantile of each part of a [`TimeSplit`], milliseconds. Each is its own
/// distribution's quantile, so the parts need not add up to the latency's.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct SplitQuantile {
    pub dynamodb: f64,
    pub ours: f64,
    pub handler: f64,
    pub outside_handler: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_found_by_id_and_other_lines_skipped() {
        let lines = vec![
            "[accounts] START RequestId: 1".to_owned(),
            r#"[accounts] {"_aws":{"Timestamp":1},"message":"request","request_id":"01J","route":"GET /accounts/{id}","status":200,"duration_ms":3.4,"dynamodb_calls":2,"dynamodb_read_units":1,"dynamodb_write_units":0,"dynamodb_ms":2.5}"#.to_owned(),
            r#"[notifier] {"message":"batch","records":3}"#.to_owned(),
            r#"[accounts] {"message":"request","request_id":"01K"}"#.to_owned(),
        ];
        let timings = request_timings(&lines);
        assert_eq!(timings.len(), 1, "a line without the figures is skipped");
        assert_eq!(
            timings["01J"],
            RequestTiming {
                duration_ms: 3.4,
                dynamodb_ms: 2.5,
                dynamodb_calls: 2
            }
        );

        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        let split = TimeSplit::of(&[(ms(4.0), Some("01J".into())), (ms(9.0), None)], &lines);
        assert_eq!(split.len(), 1, "a request without its line is left out");
        assert_eq!(split.calls_per_request, 2.0);
        let p50 = split.quantile(0.5);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-5;
        assert!(near(p50.dynamodb, 2.5) && near(p50.ours, 1.5), "{p50:?}");
        assert!(
            near(p50.handler, 0.9) && near(p50.outside_handler, 0.6),
            "the handler's 3.4 ms less DynamoDB's 2.5, the 4.0 ms latency less the handler's: {p50:?}"
        );
    }
}
