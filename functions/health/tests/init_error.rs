//! A function started without its configuration fails init the way Lambda expects: exit
//! code 1 and one log line naming the missing variable, no panic backtrace.

use std::process::Command;

#[test]
fn a_missing_variable_ends_init_with_one_line_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_health"))
        .env_clear()
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["message"], "init failed");
    assert_eq!(lines[0]["error"], "environment variable STAGE is not set");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_table_variable_is_named_too() {
    let output = Command::new(env!("CARGO_BIN_EXE_health"))
        .env_clear()
        .env("STAGE", "local")
        .env("USERS_TABLE", "users")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("environment variable REFRESH_TOKENS_TABLE is not set"),
        "{stdout}"
    );
}
