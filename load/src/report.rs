//! What a run found, as JSON (`target/load/last-run.json`, which `make cost` reads) and as an
//! HTML page with its graphs drawn in inline SVG (no script, no network).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::capacity::{Plan, TableUnits};
use crate::cost::Usage;
use crate::replay::Level;
use crate::stacklog::StackFigures;
use crate::stats::EndpointFigures;

/// The requests/s bound on p99 the sustained rate is measured against.
pub const P99_BOUND_MS: f64 = 250.0;
/// A step with more errors than this share does not count as sustained.
pub const ERROR_BOUND: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub target_per_second: f64,
    pub seconds: f64,
    pub endpoints: Vec<EndpointFigures>,
    pub all: EndpointFigures,
    /// Requests the client could not send on time (more than its in-flight bound waiting).
    pub shed: u64,
    pub stack: StackFigures,
    pub cpu_ours_seconds: f64,
    pub cpu_dynamodb_local_seconds: f64,
    pub cpu_moto_seconds: f64,
}

impl Step {
    pub fn error_share(&self) -> f64 {
        let errors: u64 = self.all.errors.values().sum();
        (errors + self.shed) as f64 / (self.all.latency.count as f64 + self.shed as f64).max(1.0)
    }

    /// Whether the step held: p99 under the bound and errors under theirs.
    pub fn sustained(&self) -> bool {
        self.all.latency.p99 < P99_BOUND_MS && self.error_share() < ERROR_BOUND
    }

    /// Our CPU (gateway and functions) per API request, milliseconds.
    pub fn cpu_ms_per_request(&self) -> (f64, f64) {
        let n = (self.all.latency.count as f64).max(1.0);
        (
            self.cpu_ours_seconds * 1000.0 / n,
            self.cpu_dynamodb_local_seconds * 1000.0 / n,
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub started_at: String,
    pub steps: Vec<Step>,
    /// The highest achieved requests/s of a sustained step.
    pub sustained_per_second: f64,
    pub replay_levels: Vec<Level>,
    /// DynamoDB calls per API request in the steps (every function, workers included).
    pub calls_per_request: f64,
    pub dynamodb_local_calls_per_second: f64,
    /// The same in API requests/s: calls/s ÷ calls per request.
    pub dynamodb_local_requests_per_second: f64,
    pub ratio: f64,
    /// Without the p99 bound: the API's best step (under 1% errors), DynamoDB Local's best
    /// level in API requests/s, and their ratio.
    #[serde(default)]
    pub peak_per_second: f64,
    #[serde(default)]
    pub dynamodb_local_peak_requests_per_second: f64,
    #[serde(default)]
    pub peak_ratio: f64,
    pub usage: Usage,
    pub tables: TableUnits,
    pub payments_per_request: f64,
    pub messages_per_payment_per_subscriber: f64,
    pub plan: Plan,
    pub checks: Vec<Check>,
}

/// The endpoints' p99 at each step: endpoint → [p99 per step].
pub fn p99_table(steps: &[Step]) -> BTreeMap<String, Vec<Option<f64>>> {
    let mut table: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        for e in &step.endpoints {
            let row = table
                .entry(e.endpoint.clone())
                .or_insert_with(|| vec![None; steps.len()]);
            row[i] = Some(e.latency.p99);
        }
    }
    table
}

/// A line chart: `series` of (name, y per x), over `xs`, in an SVG of its own.
pub fn svg_chart(
    title: &str,
    y_label: &str,
    xs: &[f64],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    let (w, h, left, bottom) = (640.0, 300.0, 60.0, 40.0);
    let y_max = series
        .iter()
        .flat_map(|(_, ys)| ys.iter().flatten())
        .fold(1.0_f64, |m, y| m.max(*y))
        * 1.1;
    let x_max = xs.iter().fold(1.0_f64, |m, x| m.max(*x));
    let px = |x: f64| left + x / x_max * (w - left - 20.0);
    let py = |y: f64| h - bottom - y / y_max * (h - bottom - 20.0);
    let colours = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    let mut svg = format!(
        "<figure><figcaption>{title}</figcaption><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{title}\">\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{}\" stroke=\"#333\"/>\
         <text x=\"4\" y=\"14\" font-size=\"11\">{y_label} (max {:.0})</text>",
        h - bottom, w - 20.0, h - bottom, h - bottom, y_max / 1.1
    );
    for x in xs {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{x:.0}</text>",
            px(*x),
            h - bottom + 15.0
        );
    }
    for (i, (name, ys)) in series.iter().enumerate() {
        let name = escape(name);
        let colour = colours[i % colours.len()];
        let points: Vec<String> = xs
            .iter()
            .zip(ys)
            .filter_map(|(x, y)| y.map(|y| format!("{:.1},{:.1}", px(*x), py(y))))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{name}</title></polyline>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"{colour}\">{name}</text>",
            points.join(" "),
            w - 190.0,
            32.0 + 12.0 * i as f64
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML report of a run.
pub fn html(run: &Run) -> String {
    let xs: Vec<f64> = run.steps.iter().map(|s| s.target_per_second).collect();
    let p99: Vec<(String, Vec<Option<f64>>)> = p99_table(&run.steps).into_iter().collect();
    let throughput = vec![
        (
            "target".to_owned(),
            run.steps
                .iter()
                .map(|s| Some(s.target_per_second))
                .collect(),
        ),
        (
            "achieved".to_owned(),
            run.steps.iter().map(|s| Some(s.all.per_second)).collect(),
        ),
    ];
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>CollectPro load test</title>\
         <style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th:first-child,td:first-child{text-align:left}</style>",
    );
    let _ = write!(
        page,
        "<h1>CollectPro load test, {}</h1><p>Sustained {:.0} API requests/s (p99 &lt; {P99_BOUND_MS} ms, errors &lt; 1%); DynamoDB Local alone: {:.0} calls/s = {:.0} requests/s at {:.2} calls per request; ratio <b>{:.0}%</b>.</p>",
        escape(&run.started_at),
        run.sustained_per_second,
        run.dynamodb_local_calls_per_second,
        run.dynamodb_local_requests_per_second,
        run.calls_per_request,
        run.ratio * 100.0
    );
    page.push_str(&svg_chart(
        "Throughput per step",
        "requests/s",
        &xs,
        &throughput,
    ));
    page.push_str(&svg_chart("p99 per endpoint per step", "ms", &xs, &p99));
    for step in &run.steps {
        let (ours, ddb) = step.cpu_ms_per_request();
        let _ = write!(
            page,
            "<h2>Step {:.0}/s</h2><p>achieved {:.1}/s, shed {}, CPU per request: ours {ours:.2} ms, DynamoDB Local {ddb:.2} ms</p>\
             <table><tr><th>endpoint</th><th>req/s</th><th>p50</th><th>p95</th><th>p99</th><th>errors</th><th>statuses</th></tr>",
            step.target_per_second, step.all.per_second, step.shed
        );
        for e in step.endpoints.iter().chain(std::iter::once(&step.all)) {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:?}</td><td>{:?}</td></tr>",
                escape(&e.endpoint), e.per_second, e.latency.p50, e.latency.p95, e.latency.p99, e.errors, e.statuses
            );
        }
        page.push_str("</table><table><tr><th>function</th><th>invocations</th><th>mean ms</th><th>cold starts</th><th>max MB</th></tr>");
        for (name, f) in &step.stack.functions {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                f.invocations,
                f.duration_ms_sum / (f.invocations.max(1) as f64),
                f.cold_starts,
                f.max_memory_mb
            );
        }
        page.push_str("</table>");
    }
    page.push_str("<h2>Consistency</h2><ul>");
    for c in &run.checks {
        let _ = write!(
            page,
            "<li>{} {}: {}</li>",
            if c.ok { "✔" } else { "✘" },
            escape(&c.name),
            escape(&c.detail)
        );
    }
    page.push_str("</ul><h2>Capacity plan</h2><ul>");
    for f in &run.plan.findings {
        let _ = write!(page, "<li>{}</li>", escape(f));
    }
    page.push_str("</ul></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;

    fn figures(endpoint: &str, p99: f64, count: usize, errors: u64) -> EndpointFigures {
        EndpointFigures {
            endpoint: endpoint.into(),
            latency: Latency {
                p99,
                count,
                ..Default::default()
            },
            per_second: count as f64 / 10.0,
            errors: if errors > 0 {
                BTreeMap::from([(503, errors)])
            } else {
                BTreeMap::new()
            },
            statuses: BTreeMap::new(),
        }
    }

    fn step(target: f64, p99: f64, errors: u64) -> Step {
        Step {
            target_per_second: target,
            seconds: 10.0,
            endpoints: vec![figures("GET /a", p99, 1000, errors)],
            all: figures("all", p99, 1000, errors),
            shed: 0,
            stack: StackFigures::default(),
            cpu_ours_seconds: 2.0,
            cpu_dynamodb_local_seconds: 4.0,
            cpu_moto_seconds: 0.0,
        }
    }

    #[test]
    fn a_step_holds_under_the_p99_and_error_bounds() {
        assert!(step(100.0, 249.0, 9).sustained());
        assert!(!step(100.0, 251.0, 0).sustained());
        assert!(!step(100.0, 10.0, 10).sustained(), "1% errors");
        assert_eq!(step(100.0, 10.0, 0).cpu_ms_per_request(), (2.0, 4.0));
    }

    #[test]
    fn the_page_draws_a_line_per_endpoint_and_escapes_names() {
        let steps = vec![step(100.0, 20.0, 0), step(200.0, 40.0, 0)];
        assert_eq!(p99_table(&steps)["GET /a"], vec![Some(20.0), Some(40.0)]);
        let chart = svg_chart(
            "t",
            "ms",
            &[100.0, 200.0],
            &[("<x>".into(), vec![Some(20.0), None])],
        );
        assert_eq!(chart.matches("<polyline").count(), 1);
        assert!(chart.contains("<title>&lt;x&gt;</title>"));
        assert!(escape("a<b>&").eq("a&lt;b&gt;&amp;"));
    }
}
