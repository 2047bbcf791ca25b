//! `fwatchdog`: see [`watchdog::cli`].

fn main() -> std::process::ExitCode {
    watchdog::cli::main(std::env::args().skip(1))
}
