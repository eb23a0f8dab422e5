//! The `must-ds` command. All logic lives in the library; this maps errors
//! to exit codes in one place.

// Arrow and Parquet allocate and free large buffers per row group; glibc's
// malloc returns them to the kernel and faults them in again each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(must_ds::cli::main());
}
