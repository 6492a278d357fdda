//! The downstream consumer examples of `examples/consumers/` (Java, Python,
//! Go): built once per test binary under `target/consumers/`, then run as a
//! service team would run them. A missing toolchain is a failure naming
//! what to install, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn build_dir() -> PathBuf {
    repo().join("target/consumers")
}

/// One of the example consumers, built and ready to run.
#[derive(Clone, Debug)]
pub struct Example {
    pub language: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

impl Example {
    /// A command running it with `args` after its own (`--topic ...`).
    pub fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null());
        cmd
    }
}

/// Runs `cmd`, failing with its output when it does not exit 0.
fn run_ok(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {cmd:?} ({e}); scripts/test.sh installs it")
    });
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Java examples (the plain consumer and the Kafka Streams variant):
/// compiled by Maven (offline: scripts/test.sh fetched their jars), run
/// with `java -cp 'classes:lib/*'`.
fn java() -> Vec<Example> {
    let out = build_dir().join("java");
    // Maven copies the jars but never removes one the pom no longer names.
    let _ = std::fs::remove_dir_all(out.join("lib"));
    let mut mvn = Command::new("mvn");
    mvn.args(["-q", "-B", "-o", "compile", "-f"])
        .arg(repo().join("examples/consumers/java/pom.xml"))
        .arg(format!("-Dbuild.dir={}", out.display()));
    run_ok(mvn, "building the Java consumers (mvn)");
    let classpath = format!(
        "{}:{}/*",
        out.join("classes").display(),
        out.join("lib").display()
    );
    [
        ("java", "ConnectionFailedConsumer"),
        ("java-streams", "ConnectionFailedStream"),
    ]
    .map(|(language, class)| Example {
        language,
        program: PathBuf::from("java"),
        args: vec![
            "-cp".into(),
            classpath.clone(),
            format!("io.codatstream.example.{class}"),
        ],
    })
    .to_vec()
}

/// The Go consumer: `go build` from its go.mod/go.sum (modules cached by
/// scripts/test.sh).
fn go() -> Example {
    let program = build_dir().join("go/consumer");
    let mut build = Command::new("go");
    build
        .args(["build", "-o"])
        .arg(&program)
        .arg(".")
        .current_dir(repo().join("examples/consumers/go"));
    run_ok(build, "building the Go consumer (go build)");
    Example {
        language: "go",
        program,
        args: Vec::new(),
    }
}

/// The Python consumer, run by the virtual environment scripts/test.sh
/// fills from tests/python/requirements.txt.
fn python() -> Example {
    let venv = std::env::var("CODAT_STREAM_TEST_PYTHON").map_or_else(
        |_| repo().join("target/python-venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        venv.exists(),
        "{} is missing: scripts/test.sh creates the Python environment",
        venv.display()
    );
    Example {
        language: "python",
        program: venv,
        args: vec![
            "-u".into(),
            repo()
                .join("examples/consumers/python/consumer.py")
                .display()
                .to_string(),
        ],
    }
}

/// Every example, built once per test binary.
pub fn examples() -> &'static [Example] {
    static BUILT: OnceLock<Vec<Example>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut all = java();
        all.extend([python(), go()]);
        all
    })
}
