//! Compiles `proto/` with protox (pure Rust, so no `protoc` binary is needed) and generates the
//! prost messages and the tonic client and server of `sluice.v1.Discovery`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["sluice/v1/sluice.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Ordered maps: the same message always encodes to the same bytes.
        .btree_map(".")
        .compile_fds(files)?;
    Ok(())
}
