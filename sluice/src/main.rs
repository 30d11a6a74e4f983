//! The `sluice` binary: glue only; logic lives in the library.

use clap::Parser;
use sluice::cli::{AutoscalerCommand, Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sluice::init_logging(cli.log_format, &cli.log);
    match cli.command {
        Command::Run(args) => sluice::run_gateway(args.config, &args.gateway),
        Command::Demo(args) => sluice::demo::run(args),
        Command::Responder(args) => sluice::run_responder(args),
        Command::Autoscaler(AutoscalerCommand::Simulate(args)) => sluice::simulate::run(args),
    }
}
