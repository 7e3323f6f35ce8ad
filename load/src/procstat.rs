//! CPU time of the stack's processes from `/proc`: ours (the gateway and every function
//! instance, i.e. every process whose executable is in the stack's binary folder) apart from
//! DynamoDB Local's (the `java` process serving its port) and moto's.

use std::path::Path;

/// CPU seconds used so far by each group.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSeconds {
    pub ours: f64,
    pub dynamodb_local: f64,
    pub moto: f64,
}

impl std::ops::Sub for CpuSeconds {
    type Output = CpuSeconds;
    fn sub(self, earlier: CpuSeconds) -> CpuSeconds {
        CpuSeconds {
            ours: self.ours - earlier.ours,
            dynamodb_local: self.dynamodb_local - earlier.dynamodb_local,
            moto: self.moto - earlier.moto,
        }
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system time of a process and of its reaped children, seconds, from the text of
/// `/proc/<pid>/stat` (fields 14-17, counted after the parenthesised command name).
pub fn stat_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, cstime field 17.
    let ticks: f64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<f64>().ok())
        .sum::<Option<f64>>()?;
    Some(ticks / TICKS_PER_SECOND)
}

/// The CPU seconds of the stack now: processes run from `bin_dir`, DynamoDB Local on
/// `dynamodb_port`, moto on `sqs_port`.
pub fn sample(bin_dir: &Path, dynamodb_port: u16, sqs_port: u16) -> CpuSeconds {
    let mut cpu = CpuSeconds::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    let dynamodb = format!("-port\0{dynamodb_port}");
    let moto = format!("-p\0{sqs_port}");
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(seconds) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_seconds(&s))
        else {
            continue;
        };
        let cmdline = std::fs::read_to_string(path.join("cmdline")).unwrap_or_default();
        let exe = std::fs::read_link(path.join("exe")).unwrap_or_default();
        if exe.starts_with(bin_dir) {
            cpu.ours += seconds;
        } else if cmdline.contains("DynamoDBLocal.jar") && cmdline.contains(&dynamodb) {
            cpu.dynamodb_local += seconds;
        } else if cmdline.contains("moto_server") && cmdline.contains(&moto) {
            cpu.moto += seconds;
        }
    }
    cpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_system_and_children_ticks() {
        // pid (comm with ) space) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime ...
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 10 0 0 0 150 50 7 3 20 0 1";
        assert_eq!(stat_seconds(stat), Some(2.1));
        assert_eq!(stat_seconds("garbage"), None);
    }

    #[test]
    fn this_process_is_not_the_stack() {
        let cpu = sample(Path::new("/nonexistent-bin-dir"), 1, 1);
        assert_eq!(cpu.ours, 0.0);
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(stat_seconds(&me).is_some());
    }
}
