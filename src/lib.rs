//! kiln-cli: the `kiln` command line and what it shares with `cargo bench`: the benchmark harness
//! ([`bench`](mod@bench)), the command line ([`cli`]), the built-in jobs ([`models`]), model files
//! over data files ([`files`]) and the loaders of the embedded data ([`data`]). The library a
//! program of one's own depends on is the `kiln` crate (`crates/kiln`); this package is not
//! published (it embeds 13 MB of data).
//!
//! A binary of one's own can register its layers and run the whole command line:
//! `kiln_cli::cli::main_with(std::env::args())` (`examples/external/`).
//!
//! ```
//! use kiln_cli::models::ModelConfig;
//!
//! // A model file, checked layer by layer without allocating anything.
//! let config = ModelConfig::from_json(
//!     r#"{"input": [4], "layers": [{"type": "dense", "units": 8, "activation": "relu"},
//!                                  {"type": "dense", "units": 3, "activation": "softmax"}]}"#,
//! )?;
//! let outline = config.outline()?;
//! assert_eq!((outline.input, outline.outputs), (vec![4], 3));
//! # Ok::<(), String>(())
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod data;
pub mod eval;
pub mod files;
pub mod fuzz;
pub mod models;
pub mod pictures;
pub mod profile;
pub mod qqp;
pub mod siamese;
