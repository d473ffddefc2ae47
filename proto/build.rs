//! Generates the gRPC code with a vendored `protoc`, so a fresh machine needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // prost-build finds protoc through PROTOC; a build script runs single-threaded.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let files = [
        "proto/flotilla/v1/control.proto",
        "proto/flotilla/v1/worker.proto",
        "proto/flotilla/v1/peer.proto",
        "proto/flotilla/v1/observe.proto",
        "proto/flotilla/v1/images.proto",
        "proto/etcd/kv.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure().compile_protos(&files, &["proto"])?;
    Ok(())
}
