//! The faas gateway. It is built in issue 3; until then this binary only
//! says so, rather than pretending to route.

fn main() -> std::process::ExitCode {
    eprintln!(
        "gateway {}: not implemented yet: only the watchdog is built so far (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
