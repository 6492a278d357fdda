//! The `codat-stream` binary: parses arguments and runs one subcommand
//! (`codat_stream::cli::commands`).

use std::process::ExitCode;

use clap::Parser;
use codat_stream::cli::args::Cli;
use codat_stream::cli::commands;

// mimalloc for Rust's allocations and, through its `override` feature,
// for librdkafka's and OpenSSL's malloc/free too: glibc's malloc was a
// seventh of the hot thread's samples (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc asks for transparent huge pages for its arenas; once it served
/// librdkafka's buffers too, that raised a backlog drain's peak RSS from
/// about 103 to 150 MB (mock cluster) for no measured speed. Refused for
/// this process, unless the operator decides through mimalloc's own
/// `MIMALLOC_ALLOW_THP`.
#[cfg(target_os = "linux")]
fn refuse_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and only
        // sets a flag of this process; an error leaves THP as it was.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[cfg(not(target_os = "linux"))]
fn refuse_transparent_huge_pages() {}

fn main() -> ExitCode {
    refuse_transparent_huge_pages();
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
