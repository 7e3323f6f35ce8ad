//! EventBridge schedules: `rate(...)` and `cron(...)` expressions fire the target with the
//! scheduled-event payload (or the schedule's `Input`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use axum::body::Bytes;
use serde_json::json;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::gateway::Shared;
use crate::model::ScheduleSpec;
use crate::runtime::Outcome;

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    Rate(Duration),
    Cron(Cron),
}

/// `cron(minutes hours day-of-month month day-of-week year)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    fields: [Vec<u32>; 6],
}

impl Expression {
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
            let mut parts = inner.split_whitespace();
            let n: u64 = parts
                .next()
                .ok_or_else(|| anyhow!("rate: no value"))?
                .parse()?;
            let unit = parts.next().unwrap_or("minutes").trim_end_matches('s');
            let secs = match unit {
                "minute" => 60,
                "hour" => 3600,
                "day" => 86_400,
                "second" => 1,
                other => bail!("rate: unknown unit {other}"),
            };
            return Ok(Self::Rate(Duration::from_secs(n * secs)));
        }
        if let Some(inner) = text.strip_prefix("cron(").and_then(|s| s.strip_suffix(')')) {
            let parts: Vec<&str> = inner.split_whitespace().collect();
            if parts.len() != 6 {
                bail!("cron: expected 6 fields, got {}", parts.len());
            }
            let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199)];
            let mut fields: [Vec<u32>; 6] = Default::default();
            for (i, part) in parts.iter().enumerate() {
                fields[i] = parse_field(part, ranges[i], i)?;
            }
            return Ok(Self::Cron(Cron { fields }));
        }
        bail!("unsupported schedule expression {text}")
    }
}

fn month_or_day(name: &str, field: usize) -> Option<u32> {
    let months = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let up = name.to_uppercase();
    match field {
        3 => months.iter().position(|m| *m == up).map(|p| p as u32 + 1),
        4 => days.iter().position(|d| *d == up).map(|p| p as u32 + 1),
        _ => None,
    }
}

fn parse_field(part: &str, (lo, hi): (u32, u32), field: usize) -> Result<Vec<u32>> {
    if part == "*" || part == "?" {
        return Ok((lo..=hi).collect());
    }
    let num = |s: &str| -> Result<u32> {
        s.parse::<u32>()
            .ok()
            .or_else(|| month_or_day(s, field))
            .ok_or_else(|| anyhow!("cron: bad value {s}"))
    };
    let mut out = Vec::new();
    for item in part.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>()?),
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else if step > 1 {
            (num(range)?, hi)
        } else {
            let v = num(range)?;
            (v, v)
        };
        let mut v = a;
        while v <= b {
            out.push(v);
            v += step.max(1);
        }
    }
    Ok(out)
}

impl Cron {
    fn matches(&self, t: OffsetDateTime) -> bool {
        let dow = t.weekday().number_from_sunday() as u32;
        self.fields[0].contains(&(t.minute() as u32))
            && self.fields[1].contains(&(t.hour() as u32))
            && self.fields[2].contains(&(t.day() as u32))
            && self.fields[3].contains(&(u8::from(t.month()) as u32))
            && self.fields[4].contains(&dow)
            && self.fields[5].contains(&(t.year() as u32))
    }

    /// The next matching minute strictly after `after` (UTC), within about five years.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let mut t =
            after.replace_second(0).ok()?.replace_nanosecond(0).ok()? + time::Duration::minutes(1);
        for _ in 0..(5 * 366 * 24 * 60) {
            if self.matches(t) {
                return Some(t);
            }
            t += time::Duration::minutes(1);
        }
        None
    }
}

/// The EventBridge scheduled event.
pub fn scheduled_event(shared: &Shared, spec: &ScheduleSpec) -> serde_json::Value {
    if let Some(input) = &spec.input {
        return input.clone();
    }
    let time = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "version": "0",
        "id": uuid(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": crate::template::LOCAL_ACCOUNT,
        "time": time,
        "region": shared.region,
        "resources": [format!("arn:aws:events:{}:{}:rule/{}", shared.region, crate::template::LOCAL_ACCOUNT, spec.name.replace('.', "-"))],
        "detail": {},
    })
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Fires one schedule now.
pub async fn fire(shared: &Shared, spec: &ScheduleSpec) -> Outcome {
    let event = scheduled_event(shared, spec);
    let outcome = shared
        .invoke(&spec.function, Bytes::from(event.to_string()))
        .await;
    if !outcome.is_success() {
        eprintln!(
            "[schedule {}] invocation failed: {}",
            spec.name,
            outcome.to_json()
        );
    }
    outcome
}

/// The running schedules.
pub struct Scheduler {
    tasks: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts every enabled schedule; `speedup` divides `rate()` intervals (tests).
    pub fn start(shared: Arc<Shared>, speedup: f64) -> Self {
        let mut tasks = Vec::new();
        for spec in shared.model.schedules.clone() {
            if !spec.enabled {
                continue;
            }
            let expr = match Expression::parse(&spec.expression) {
                Ok(e) => e,
                Err(err) => {
                    eprintln!("[schedule {}] ignored: {err}", spec.name);
                    continue;
                }
            };
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let wait = match &expr {
                        Expression::Rate(d) => d.div_f64(speedup.max(0.001)),
                        Expression::Cron(c) => {
                            let now = OffsetDateTime::now_utc();
                            match c.next_after(now) {
                                Some(next) => {
                                    let d = next - now;
                                    Duration::from_secs_f64(d.as_seconds_f64().max(0.0))
                                        .div_f64(speedup.max(0.001))
                                }
                                None => return,
                            }
                        }
                    };
                    tokio::time::sleep(wait).await;
                    let shared = shared.clone();
                    let spec = spec.clone();
                    // Asynchronous invocation: the next tick does not wait for this one.
                    tokio::spawn(async move {
                        fire(&shared, &spec).await;
                    });
                }
            }));
        }
        Self { tasks }
    }

    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_and_crons() {
        assert_eq!(
            Expression::parse("rate(5 minutes)").unwrap(),
            Expression::Rate(Duration::from_secs(300))
        );
        assert_eq!(
            Expression::parse("rate(1 minute)").unwrap(),
            Expression::Rate(Duration::from_secs(60))
        );
        let Expression::Cron(c) = Expression::parse("cron(0 2 * * ? *)").unwrap() else {
            panic!("not a cron");
        };
        let t = time::macros::datetime!(2026-01-05 13:20 UTC);
        assert_eq!(
            c.next_after(t).unwrap(),
            time::macros::datetime!(2026-01-06 02:00 UTC)
        );
        let Expression::Cron(c) = Expression::parse("cron(*/15 9-17 ? * MON-FRI *)").unwrap()
        else {
            panic!("not a cron");
        };
        // Saturday 2026-01-10 → Monday 09:00.
        let t = time::macros::datetime!(2026-01-10 12:00 UTC);
        assert_eq!(
            c.next_after(t).unwrap(),
            time::macros::datetime!(2026-01-12 09:00 UTC)
        );
        assert!(Expression::parse("every day").is_err());
    }
}
