//! kiln's command line with this crate's layer registered: `kiln-ext train --model model.json
//! --data points.csv` reads a model file that names `channel_swish`, and `kiln-ext eval` and
//! `predict` the models it saves.

fn main() -> std::process::ExitCode {
    if let Err(e) = kiln_ext_layers::register() {
        eprintln!("kiln-ext: {e}");
        return std::process::ExitCode::FAILURE;
    }
    kiln_cli::cli::main_with(std::env::args())
}
