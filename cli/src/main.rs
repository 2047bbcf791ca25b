//! The `faas` command line. It is built in issue 4; until then this binary
//! only says so.

fn main() -> std::process::ExitCode {
    eprintln!(
        "faas {}: not implemented yet: only the watchdog is built so far (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
