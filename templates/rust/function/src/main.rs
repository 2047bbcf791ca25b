//! A Rust function: the request body on stdin, the answer on stdout.
//! A non-zero exit answers 500 with stderr. Request details are in the
//! Http_Method, Http_Path, Http_Query and Http_<Header> variables.

use std::io::{Read, Write};

fn main() {
    let mut body = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut body) {
        eprintln!("cannot read the request: {e}");
        std::process::exit(1);
    }
    let name = body.trim();
    let name = if name.is_empty() { "world" } else { name };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Hello, {name}!");
}
