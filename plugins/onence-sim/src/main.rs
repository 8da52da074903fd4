//! `onence-sim`: the 1NCE Management API simulator as a program.

use clap::Parser;

/// A simulator of 1NCE's Management API v1 (see plugins/onence-sim/README.md).
#[derive(Parser, Debug)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9091")]
    listen: std::net::SocketAddr,
    /// Seed of the SIMs and their usage.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of SIMs.
    #[arg(long, default_value_t = 20)]
    sims: usize,
    /// The API user it accepts.
    #[arg(long, default_value = "12345_demo")]
    username: String,
    /// Its password.
    #[arg(long, default_value = "demo-secret")]
    password: String,
    /// Lifetime of the tokens it issues, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sim = devext_onence_sim::start(devext_onence_sim::SimConfig {
        listen: args.listen,
        seed: args.seed,
        sims: args.sims,
        username: args.username,
        password: args.password,
        token_lifetime_secs: args.token_lifetime_secs,
        ..Default::default()
    })
    .await?;
    println!(
        "1NCE simulator at {} ({} SIMs)",
        sim.endpoint(),
        sim.iccids().len()
    );
    for iccid in sim.iccids().iter().take(3) {
        println!("  SIM {iccid}");
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
