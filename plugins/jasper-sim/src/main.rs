//! `jasper-sim`: serves a simulated Jasper Control Center account on
//! loopback until interrupted. The first line on stdout is
//! `listening on ADDR`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use devext_jasper_sim::{Credentials, FaultMode, FaultSettings, LimitSettings, SimConfig};

/// Jasper Control Center simulator (SOAP + REST) for tests and demos.
#[derive(Debug, Parser)]
#[command(name = "jasper-sim", version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Number of SIMs in the account.
    #[arg(long, default_value_t = 50)]
    sims: usize,
    /// Seed of the account (same seed, same SIMs and usage).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// API user name (SOAP and REST).
    #[arg(long, default_value = "demo")]
    username: String,
    /// SOAP password.
    #[arg(long, default_value = "demo-password")]
    password: String,
    /// SOAP license key.
    #[arg(long, default_value = "demo-license")]
    license_key: String,
    /// REST API key.
    #[arg(long, default_value = "demo-api-key")]
    api_key: String,
    /// Requests admitted per rolling second (0 = unlimited).
    #[arg(long, default_value_t = 5)]
    rate_per_second: u32,
    /// Concurrent requests admitted (0 = unlimited).
    #[arg(long, default_value_t = 1)]
    max_in_flight: u32,
    /// Do not enforce rate limits (statistics are still recorded).
    #[arg(long)]
    no_rate_limit: bool,
    /// Milliseconds added to every API response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction (0..=1) of API requests answered with a server error.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Forced fault mode: none, http500, rate-limit, malformed, drop, drop-after-write.
    #[arg(long, value_enum, default_value = "none")]
    fault_mode: CliFaultMode,
    /// Number of requests the fault mode applies to (default: all).
    #[arg(long)]
    fault_count: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CliFaultMode {
    None,
    Http500,
    #[value(alias = "rate_limit")]
    RateLimit,
    Malformed,
    Drop,
    #[value(alias = "drop_after_write")]
    DropAfterWrite,
}

impl From<CliFaultMode> for FaultMode {
    fn from(mode: CliFaultMode) -> Self {
        match mode {
            CliFaultMode::None => FaultMode::None,
            CliFaultMode::Http500 => FaultMode::Http500,
            CliFaultMode::RateLimit => FaultMode::RateLimit,
            CliFaultMode::Malformed => FaultMode::Malformed,
            CliFaultMode::Drop => FaultMode::Drop,
            CliFaultMode::DropAfterWrite => FaultMode::DropAfterWrite,
        }
    }
}

impl Cli {
    fn into_config(self) -> SimConfig {
        SimConfig {
            listen: self.listen,
            sims: self.sims,
            seed: self.seed,
            credentials: Credentials {
                username: self.username,
                password: self.password,
                license_key: self.license_key,
                api_key: self.api_key,
            },
            limits: LimitSettings {
                enabled: !self.no_rate_limit,
                rate_per_second: self.rate_per_second,
                max_in_flight: self.max_in_flight,
            },
            faults: FaultSettings {
                latency_ms: self.latency_ms,
                error_rate: self.error_rate,
                mode: self.fault_mode.into(),
                count: self.fault_count,
            },
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.into_config();
    if !config.listen.ip().is_loopback() {
        eprintln!(
            "warning: listening on a non-loopback address ({}); the simulator has no TLS and demo credentials",
            config.listen
        );
    }
    let sim = devext_jasper_sim::start(config).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", sim.addr())?;
    stdout.flush()?;
    drop(stdout);
    eprintln!(
        "jasper-sim: {} SIMs; SOAP {}, REST {}, control {}/_sim",
        sim.config().sims,
        sim.soap_url("terminal"),
        sim.rest_base_url(),
        sim.base_url()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jasper-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
