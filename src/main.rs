//! The `kiln` binary: `cargo run --release -- --help`.

fn main() -> std::process::ExitCode {
    kiln_cli::cli::main_with(std::env::args())
}
