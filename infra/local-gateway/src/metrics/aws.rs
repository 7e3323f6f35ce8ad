//! The figures AWS publishes itself, recorded from what the gateway knows, under the names,
//! namespaces, units and dimensions an operator finds in CloudWatch:
//!
//! - `AWS/Lambda` (dimension `FunctionName`): `Invocations`, `Errors` (function errors,
//!   timeouts, crashes, init failures), `Throttles`, `Duration`, `ConcurrentExecutions`
//!   and, for stream mappings, `IteratorAge`;
//! - `LambdaInsights` (dimension `function_name`): `init_duration` (one value per cold
//!   start) and `used_memory_max`, the figures of the REPORT lines' `Init Duration` and
//!   `Max Memory Used`;
//! - `AWS/SQS` (dimension `QueueName`): `ApproximateNumberOfMessagesVisible`,
//!   `ApproximateNumberOfMessagesNotVisible`, `ApproximateAgeOfOldestMessage` (locally: the
//!   age of the oldest message a poller received in the period);
//! - `AWS/ApiGateway` (WebSocket API, dimension `Stage`): `ConnectCount`, `MessageCount`;
//!   and `LocalGateway` `OpenConnections`, which CloudWatch does not have.

use super::{Kind, Registry};
use crate::runtime::Outcome;

pub const LAMBDA: &str = "AWS/Lambda";
pub const LAMBDA_INSIGHTS: &str = "LambdaInsights";
pub const SQS: &str = "AWS/SQS";
pub const API_GATEWAY: &str = "AWS/ApiGateway";
pub const LOCAL: &str = "LocalGateway";

impl Registry {
    /// An invocation's outcome: an invocation (and maybe an error), or a throttle. An event
    /// over the payload quota is refused before it is an invocation, as on AWS.
    pub fn lambda_outcome(&self, function: &str, outcome: &Outcome) {
        let counter = |name: &str| {
            self.record(
                LAMBDA,
                name,
                &[("FunctionName", function)],
                Kind::Counter,
                "Count",
                1.0,
            )
        };
        match outcome {
            Outcome::RequestTooLarge(_) => {}
            Outcome::Throttled => counter("Throttles"),
            Outcome::Success(_) => counter("Invocations"),
            Outcome::FunctionError(_)
            | Outcome::Timeout
            | Outcome::Crashed(_)
            | Outcome::InitError(_) => {
                counter("Invocations");
                counter("Errors");
            }
        }
    }

    /// The figures of a REPORT line.
    pub fn lambda_report(
        &self,
        function: &str,
        duration_ms: f64,
        init_ms: Option<f64>,
        max_memory_mb: u64,
    ) {
        let dims = [("FunctionName", function)];
        self.record(
            LAMBDA,
            "Duration",
            &dims,
            Kind::Summary,
            "Milliseconds",
            duration_ms,
        );
        let dims = [("function_name", function)];
        if let Some(init) = init_ms {
            let unit = "Milliseconds";
            self.record(
                LAMBDA_INSIGHTS,
                "init_duration",
                &dims,
                Kind::Summary,
                unit,
                init,
            );
        }
        self.record(
            LAMBDA_INSIGHTS,
            "used_memory_max",
            &dims,
            Kind::Gauge,
            "Megabytes",
            max_memory_mb as f64,
        );
    }

    /// Instances of a function busy now (running an invocation or starting).
    pub fn lambda_concurrency(&self, function: &str, busy: usize) {
        self.record(
            LAMBDA,
            "ConcurrentExecutions",
            &[("FunctionName", function)],
            Kind::Gauge,
            "Count",
            busy as f64,
        );
    }

    /// How old the newest record of a stream batch was when the function got it.
    pub fn iterator_age(&self, function: &str, age_ms: f64) {
        self.record(
            LAMBDA,
            "IteratorAge",
            &[("FunctionName", function)],
            Kind::Summary,
            "Milliseconds",
            age_ms.max(0.0),
        );
    }

    /// A queue's depth.
    pub fn queue_depth(&self, queue: &str, visible: u64, not_visible: u64) {
        let dims = [("QueueName", queue)];
        for (name, value) in [
            ("ApproximateNumberOfMessagesVisible", visible),
            ("ApproximateNumberOfMessagesNotVisible", not_visible),
        ] {
            self.record(SQS, name, &dims, Kind::Gauge, "Count", value as f64);
        }
    }

    /// The age of the oldest message a poller of `queue` received.
    pub fn queue_oldest_age(&self, queue: &str, age_secs: f64) {
        self.record(
            SQS,
            "ApproximateAgeOfOldestMessage",
            &[("QueueName", queue)],
            Kind::Gauge,
            "Seconds",
            age_secs.max(0.0),
        );
    }

    /// A WebSocket connection attempt (`$connect`).
    pub fn websocket_connect(&self, stage: &str) {
        self.websocket_counter("ConnectCount", stage);
    }

    /// A WebSocket message, from a client or posted to one through `@connections`.
    pub fn websocket_message(&self, stage: &str) {
        self.websocket_counter("MessageCount", stage);
    }

    fn websocket_counter(&self, name: &str, stage: &str) {
        self.record(
            API_GATEWAY,
            name,
            &[("Stage", stage)],
            Kind::Counter,
            "Count",
            1.0,
        );
    }

    /// WebSocket connections open now.
    pub fn websocket_open(&self, open: usize) {
        self.record(
            LOCAL,
            "OpenConnections",
            &[],
            Kind::Gauge,
            "Count",
            open as f64,
        );
    }
}
