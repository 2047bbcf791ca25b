//! The templates (`../templates`) are embedded by `include_dir!`, which
//! stable Rust cannot track: rebuild whenever any of their files changes.
fn main() {
    println!("cargo:rerun-if-changed=../templates");
}
