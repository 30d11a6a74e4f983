//! The `sluice` binary: glue only; the wiring lives in the crate's library.

use clap::Parser;
use sluice::cli::{AutoscalerCommand, Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sluice::init_logging(cli.log_format, &cli.log);
    match cli.command {
        Command::Run(args) => sluice::run(&args),
        Command::Controller(args) => sluice::run_controller(&args),
        Command::Proxy(args) => sluice::run_proxy(&args),
        Command::Demo(args) => sluice::demo::run(args),
        Command::Responder(args) => sluice::responder::run(args),
        Command::Autoscaler(AutoscalerCommand::Simulate(args)) => sluice::simulate::run(args),
        Command::Crds(args) => sluice::generate::crds(&args),
        Command::Rbac(args) => sluice::generate::rbac(&args),
    }
}
