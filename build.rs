//! With the `tch` feature, records the folder of the libtorch that torch-sys
//! linked (`DEP_TCH_LIBTORCH_LIB`, from its `links = "tch"` metadata) as the
//! rpath of this package's binaries, tests and examples, so that
//! `must-ds label` starts without `LD_LIBRARY_PATH`. The path is the one of
//! the build machine: a binary copied to another machine finds libtorch
//! there at the same path, or through `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "macos" || os.ends_with("bsd") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
