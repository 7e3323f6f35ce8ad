//! `local-gateway run ...` serves template.yaml locally; `local-gateway invoke ...` invokes
//! one function once with an event file, like `sam local invoke`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use local_gateway::runtime::LogSink;
use local_gateway::{Gateway, GatewayOptions};

const USAGE: &str = "\
usage:
  local-gateway run --template template.yaml [--http-port 3000] [--ws-port 3001]
                    [--bin-dir DIR] [--prefix collectpro-local-] [--max-instances 8]
                    [--max-queued 256] [--queue-wait-ms 10000]
                    [--param Name=Value ...]
                    [--dynamodb-faults TransactionConflict=0.05,Throttling=0.02,InternalServerError=0.01
                     --fault-seed N]   (see docs/faults.md)
  local-gateway invoke --function <LogicalIdOrBinary> --event <file.json>
                    [--template template.yaml] [--bin-dir DIR] [--prefix P] [--param Name=Value ...]

Expects AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SQS (infra/stack.sh sets them).
Function binaries must be built first: cargo build --bins.";

struct Args {
    options: GatewayOptions,
    function: Option<String>,
    event: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut options = GatewayOptions::default();
    let mut function = None;
    let mut event = None;
    let mut faults: Option<String> = None;
    let mut fault_seed = 0u64;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag.clone(), None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--template" => options.template_path = value()?.into(),
            "--http-port" => options.http_port = value()?.parse().context("--http-port")?,
            "--ws-port" => options.ws_port = value()?.parse().context("--ws-port")?,
            "--bin-dir" => options.bin_dir = Some(value()?.into()),
            "--prefix" => options.prefix = value()?,
            "--max-instances" => {
                options.max_instances = value()?.parse().context("--max-instances")?
            }
            "--max-queued" => options.max_queued = value()?.parse().context("--max-queued")?,
            "--queue-wait-ms" => {
                options.queue_wait =
                    std::time::Duration::from_millis(value()?.parse().context("--queue-wait-ms")?)
            }
            "--param" | "--parameter" => {
                let v = value()?;
                let (k, v) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--param expects Name=Value, got {v}"))?;
                options.params.insert(k.to_owned(), v.to_owned());
            }
            "--schedule-speedup" => {
                options.schedule_speedup = value()?.parse().context("--schedule-speedup")?
            }
            "--dynamodb-faults" => faults = Some(value()?),
            "--fault-seed" => fault_seed = value()?.parse().context("--fault-seed")?,
            "--function" | "-f" => function = Some(value()?),
            "--event" | "-e" => event = Some(value()?.into()),
            "--help" | "-h" => bail!("{USAGE}"),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if let Some(spec) = faults {
        options.dynamodb_faults = Some(local_gateway::fault_proxy::FaultConfig::parse(
            &spec, fault_seed,
        )?);
    }
    Ok(Args {
        options,
        function,
        event,
    })
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOCAL_GATEWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let parsed = match parse(rest) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command.as_str() {
            "run" => run(parsed.options).await,
            "invoke" => invoke(parsed).await,
            other => Err(anyhow!("unknown command {other}\n{USAGE}")),
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("local-gateway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: GatewayOptions) -> Result<ExitCode> {
    if std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_none() {
        eprintln!("warning: AWS_ENDPOINT_URL_DYNAMODB is not set; run under infra/stack.sh");
    }
    let gateway = Gateway::start(options).await?;
    println!("local-gateway is up:\n{}", gateway.describe());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("local-gateway: stopping every function");
    gateway.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn invoke(args: Args) -> Result<ExitCode> {
    let wanted = args
        .function
        .ok_or_else(|| anyhow!("invoke needs --function\n{USAGE}"))?;
    let event_path = args
        .event
        .ok_or_else(|| anyhow!("invoke needs --event\n{USAGE}"))?;
    let text = std::fs::read_to_string(&event_path)
        .with_context(|| format!("reading {}", event_path.display()))?;
    let event: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", event_path.display()))?;
    let mut options = args.options;
    options.http_port = 0;
    options.ws_port = 0;
    options.event_sources = false;
    options.logs = LogSink::Stderr;
    // With endpoints exported the tables and queues are created; without, only named.
    options.provision = std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some();
    let gateway = Gateway::start(options).await?;
    let function = gateway
        .model()
        .functions
        .values()
        .find(|f| f.logical_id == wanted || f.binary == wanted)
        .map(|f| f.logical_id.clone())
        .ok_or_else(|| {
            let names: BTreeMap<_, _> = gateway
                .model()
                .functions
                .values()
                .map(|f| (f.logical_id.clone(), f.binary.clone()))
                .collect();
            anyhow!("no function {wanted}; the template has {names:?}")
        })?;
    let outcome = gateway.invoke(&function, event).await;
    println!("{}", outcome.to_json());
    gateway.shutdown().await;
    Ok(if outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
