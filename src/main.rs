use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    acr_attach::install_crypto_provider();
    let cli = acr_attach::cli::Cli::parse();
    acr_attach::cli::main(cli)
}
