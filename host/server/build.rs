//! Generates the gRPC server and client from `proto/weir/v1/control.proto`
//! (protoc must be installed: `.ci/setup` installs it), plus the file
//! descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("weir_v1_descriptor.bin"))
        .compile_protos(&["proto/weir/v1/control.proto"], &["proto"])?;
    Ok(())
}
