//! The `codat-stream` binary: parses arguments and runs one subcommand
//! (`codat_stream::cli::commands`).

use std::process::ExitCode;

use clap::Parser;
use codat_stream::cli::args::Cli;
use codat_stream::cli::commands;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; every usage error exits 1.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            eprintln!("codat-stream: {e:#}");
            ExitCode::from(1)
        }
    }
}
