//! `cargo bench` runs `kiln bench` with the same arguments:
//! `cargo bench -- --filter matmul --json benches/results/local.json`.

fn main() -> std::process::ExitCode {
    // cargo passes `--bench`; drop it, keep the rest.
    let args = std::env::args()
        .enumerate()
        .filter(|(i, a)| *i == 0 || a != "--bench")
        .map(|(_, a)| a);
    let args: Vec<String> = std::iter::once("kiln".to_string())
        .chain(args.skip(1))
        .collect();
    let args = if args.iter().any(|a| a == "bench") {
        args
    } else {
        let mut v = vec![args[0].clone(), "bench".to_string()];
        v.extend(args.into_iter().skip(1));
        v
    };
    kiln_cli::cli::main_with(args)
}
