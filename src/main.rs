//! The `must-ds` command. All logic lives in the library; this maps errors
//! to exit codes in one place.

fn main() {
    std::process::exit(must_ds::cli::main());
}
