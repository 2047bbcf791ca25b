//! Compiles the gRPC interfaces in `proto/` (tinyFaaS's, unchanged, and
//! the gateway's own) with protox, a protobuf compiler in Rust, so a build
//! needs no `protoc`; tonic-prost-build writes the server and client code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/tinyfaas.proto", "proto/faas/v1/functions.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
