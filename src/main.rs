//! The `paysync` binary: parse the command line and hand over to [`paysync::cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysync::cli::run(paysync::cli::Cli::parse())
}
