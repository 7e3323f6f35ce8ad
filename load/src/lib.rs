//! `make load` and `make cost`: a mixed load test of the whole local stack (HTTP users and
//! WebSocket subscribers), DynamoDB Local's own ceiling for the same DynamoDB calls measured
//! in the same run, a consistency check, the capacity plan for the seed's figures and the
//! AWS cost per million requests. See docs/capacity.md and docs/cost.md.
//!
//! The pure parts (statistics, log parsing, cost and capacity arithmetic, the report) are
//! unit-tested; the run itself is a benchmark, kept out of `make test`.

pub mod capacity;
pub mod cost;
pub mod driver;
pub mod mix;
pub mod procstat;
pub mod replay;
pub mod report;
pub mod stacklog;
pub mod stats;
pub mod subscribers;
