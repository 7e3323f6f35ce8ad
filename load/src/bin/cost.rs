//! `make cost`: the AWS cost per million API requests of the last `make load` run's mix, at
//! the list prices of `load/aws-prices.json`, itemised; with several runs' files as
//! arguments, each line is the median of the runs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use load::cost::{self, Prices};
use load::report::Run;
use load::stats::median;

fn main() -> Result<()> {
    let mut files: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        files.push(PathBuf::from("target/load/last-run.json"));
    }
    let runs: Vec<Run> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("{} (run make load first)", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}", f.display()))
        })
        .collect::<Result<_>>()?;
    let prices = Prices::shipped();
    let bills: Vec<Vec<cost::Line>> = runs
        .iter()
        .map(|r| cost::per_million(&prices, &r.usage))
        .collect();
    println!(
        "AWS cost per million API requests of the load's mix ({} run(s){}), {} list prices of {}:",
        runs.len(),
        if runs.len() > 1 { ", medians" } else { "" },
        prices.region,
        prices.as_of
    );
    let mut lines: Vec<(String, f64, String, f64)> = bills[0]
        .iter()
        .map(|l| {
            let same = |b: &Vec<cost::Line>, f: fn(&cost::Line) -> f64| {
                b.iter().find(|x| x.item == l.item).map(f)
            };
            let q: Vec<f64> = bills
                .iter()
                .filter_map(|b| same(b, |x| x.quantity))
                .collect();
            let u: Vec<f64> = bills.iter().filter_map(|b| same(b, |x| x.usd)).collect();
            (
                l.item.clone(),
                median(&q).unwrap_or(0.0),
                l.unit.clone(),
                median(&u).unwrap_or(0.0),
            )
        })
        .collect();
    lines.sort_by(|a, b| b.3.total_cmp(&a.3));
    for (item, quantity, unit, usd) in &lines {
        println!("  {item:<48} {quantity:>14.1} {unit:<9} ${usd:>8.4}");
    }
    let totals: Vec<f64> = bills.iter().map(|b| cost::total(b)).collect();
    let total = median(&totals).unwrap_or(0.0);
    println!(
        "  {:<48} {:>24} ${total:>8.4}  (target: under $2.00)",
        "total", ""
    );
    if let Some((item, _, _, usd)) = lines.first() {
        println!(
            "largest: {item}, {:.0}% of the total",
            usd / total.max(f64::EPSILON) * 100.0
        );
    }
    let ours: f64 = lines
        .iter()
        .filter(|l| l.0.starts_with("Lambda"))
        .map(|l| l.3)
        .sum();
    println!(
        "our code (Lambda compute and requests): ${ours:.4} per million, {:.0}% of the total",
        ours / total.max(f64::EPSILON) * 100.0
    );
    let advice = cost::memory_advice(&prices, &runs[runs.len() / 2].usage);
    for a in &advice {
        println!(
            "  memory: {} uses at most {:.0} MB of {:.0} MB; at {:.0} MB it would save ${:.4} per million if its duration held (measure first: CPU scales with memory)",
            a.function,
            runs[runs.len() / 2].usage.functions.iter().find(|f| f.name == a.function).map_or(0.0, |f| f.max_memory_mb),
            a.current_mb,
            a.suggested_mb,
            a.usd_saved
        );
    }
    println!("price table: load/aws-prices.json ({})", prices.source);
    Ok(())
}
