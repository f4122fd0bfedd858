//! The `kiln` command line: `kiln train`, `kiln info`, `kiln bench`. `cargo bench` runs `kiln bench` through
//! [`main_with`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiln_device::{list_adapters, Device, DeviceChoice};

use crate::bench;

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Deep-learning training on any GPU through WGSL and wgpu"
)]
pub struct Cli {
    /// Device: auto (best GPU, else CPU), cpu, gpu, vulkan, metal, dx12, gl, or name:<adapter substring>.
    #[arg(long, global = true, env = "KILN_DEVICE", default_value = "auto")]
    pub device: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model: writes OUT/model.safetensors, OUT/checkpoints/, OUT/history.{csv,json,png}.
    Train(TrainArgs),
    /// Evaluate a saved model. mnist: accuracy and loss on the test set, a confusion matrix,
    /// pictures. qqp: accuracy and loss on a labelled file, or on the embedded data's validation
    /// split.
    Eval {
        /// Which task: mnist or qqp.
        task: String,
        /// The saved model (OUT/model.safetensors or OUT/best.safetensors of a `kiln train` run).
        #[arg(long)]
        model: PathBuf,
        /// mnist: folder with the IDX files (default: the embedded data/mnist). qqp: Quora's TSV or
        /// Kaggle's train.csv (default: the embedded data's validation split).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// Where to draw test_digits.png and confusion.png (default: the model's folder).
        #[arg(long)]
        pictures: Option<PathBuf>,
        /// Evaluate on the first N test images only.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Duplicate probability of a question pair, or a Kaggle submission file for a whole file.
    Predict {
        /// Which task: qqp.
        task: String,
        /// The saved model.
        #[arg(long)]
        model: PathBuf,
        /// The two questions.
        questions: Vec<String>,
        /// A file of pairs (Kaggle's test.csv, train.csv or Quora's TSV): writes --out.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The submission file written with --data.
        #[arg(long, default_value = "submission.csv")]
        out: PathBuf,
        /// Overwrite --out when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Write a task's encoded training and validation split as JSON (for training the same data
    /// in another framework, e.g. tools/keras/train_qqp.py).
    Export {
        /// Which task: qqp.
        task: String,
        /// Quora's TSV or Kaggle's train.csv (default: the embedded data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Ids per question.
        #[arg(long, default_value_t = 31)]
        len: usize,
        /// Seed of the split.
        #[arg(long, default_value_t = 2019)]
        seed: u32,
        /// The JSON file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// List every adapter, and the chosen one's limits and features.
    Info,
    /// Run kernel variants side by side and report median time, GFLOP/s or GB/s, and dispatches.
    Bench {
        /// Only kernels whose name contains this (matmul, elementwise, reduce, softmax, embedding,
        /// dropout, optim, dispatch_overhead).
        #[arg(long)]
        filter: Option<String>,
        /// Write the records as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Timed runs per case (after one warm-up); the median is reported.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Small shapes: a smoke run in seconds.
        #[arg(long)]
        quick: bool,
    },
}

/// `kiln train`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Which model: spirals (two spirals, an MLP), xor, mnist (a LeNet-style CNN), or qqp (the
    /// seed's BiLSTM question-pair classifier on Quora Question Pairs).
    #[arg(default_value = "spirals")]
    model: String,
    /// mnist: pooling, max | avg | stochastic.
    #[arg(long)]
    pool: Option<String>,
    /// mnist: folder with the IDX files (default: the embedded data/mnist). qqp: Quora's TSV or
    /// Kaggle's train.csv (default: the embedded data/qqp/mini_quora_duplicate_questions.tsv).
    #[arg(long)]
    data: Option<PathBuf>,
    /// qqp: seed (the tutorial's model) or siamese (one BiLSTM encoder shared by both questions).
    #[arg(long)]
    arch: Option<String>,
    /// qqp: ids per question (padded at the end, truncated at the front).
    #[arg(long, default_value_t = 31)]
    len: usize,
    /// qqp: keep only the N most frequent words (others become the out-of-vocabulary id).
    #[arg(long)]
    vocab_cap: Option<usize>,
    /// qqp: refuse a file with bad rows instead of skipping (and reporting) them.
    #[arg(long)]
    strict: bool,
    /// qqp: seed of the 80/20 split (sklearn's random_state); --seed drives initialization,
    /// shuffling and dropout.
    #[arg(long, default_value_t = 2019)]
    split_seed: u32,
    /// LSTM layers: fused (the persistent WGSL kernels) or unfused (per-timestep ops).
    #[arg(long, default_value = "fused", value_parser = parse_lstm_path)]
    lstm: kiln_graph::LstmPath,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long, default_value_t = 2019)]
    seed: u64,
    /// Learning rate (default: the model's).
    #[arg(long)]
    lr: Option<f32>,
    /// Output folder (default: runs/<model>, or runs/<model>-2, ... when that exists; with --resume,
    /// the newest of them).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the newest checkpoint in OUT/checkpoints.
    #[arg(long)]
    resume: bool,
    /// No progress bars (one line per epoch).
    #[arg(long)]
    quiet: bool,
    /// mnist: train on the first N images only (validate on N / 5): a smoke run.
    #[arg(long)]
    limit: Option<usize>,
}

fn parse_lstm_path(s: &str) -> Result<kiln_graph::LstmPath, String> {
    match s {
        "fused" => Ok(kiln_graph::LstmPath::Fused),
        "unfused" => Ok(kiln_graph::LstmPath::Unfused),
        other => Err(format!("`{other}`: choose fused or unfused")),
    }
}

fn open_device(choice: &str) -> Result<Device, String> {
    let choice: DeviceChoice = choice
        .parse()
        .map_err(|e: kiln_device::Error| e.to_string())?;
    let device = Device::new(&choice).map_err(|e| e.to_string())?;
    if let Some(note) = device.note() {
        eprintln!("kiln: {note}");
    }
    Ok(device)
}

fn info(device: &Device) {
    println!("adapters (best first):");
    let adapters = list_adapters();
    if adapters.is_empty() {
        println!("  none found. {}", kiln_device::adapter::NO_ADAPTER_HINT);
    }
    for a in adapters {
        println!(
            "  {:<40} {:<8} {:<14} {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    println!("chosen: {}", device.name());
    let info = device.info();
    if !info.limits.is_empty() {
        println!("limits:");
        for (name, value) in info.limits {
            println!("  {name:<40} {value}");
        }
        println!("features: {}", info.features.join(", "));
        println!(
            "timing: {}",
            if device.has_timestamps() {
                "GPU timestamps"
            } else {
                "wall clock (no TIMESTAMP_QUERY)"
            }
        );
    }
}

fn train(device: &Device, args: TrainArgs) -> Result<(), String> {
    let TrainArgs {
        model,
        pool,
        data,
        epochs,
        batch,
        lr,
        seed,
        out,
        resume,
        quiet,
        limit,
        arch,
        len,
        vocab_cap,
        strict,
        lstm,
        split_seed,
    } = args;
    let model = model.as_str();
    if len == 0 {
        return Err("--len must be at least 1".into());
    }
    let job_opts = crate::models::JobOptions {
        pool,
        data,
        limit,
        arch,
        preprocess: crate::data::qqp::Preprocess {
            len,
            vocab_cap,
            split_seed,
            ..Default::default()
        },
        strict,
        lstm_path: lstm,
    };
    let mut job = crate::models::job(model, seed, &job_opts)?.ok_or_else(|| {
        format!(
            "unknown model `{model}`; choose one of {}",
            crate::models::NAMES.join(", ")
        )
    })?;
    if let Some(e) = epochs {
        job.config.epochs = e;
    }
    if let Some(b) = batch {
        job.config.batch = b;
    }
    if let Some(lr) = lr {
        job.config.optimizer = job.config.optimizer.with_lr(lr);
    }
    let out = out.unwrap_or_else(|| crate::models::default_out(job.name, resume));
    let has_checkpoints = kiln_graph::checkpoint::latest(&out.join("checkpoints")).is_some();
    if has_checkpoints && !resume {
        return Err(format!(
            "{} already holds a run's checkpoints; pass --resume to continue it, or --out for a new folder",
            out.display()
        ));
    }
    let builder = kiln_graph::ParamBuilder::new(seed);
    let mut model = job.model.init(&builder).map_err(|e| e.to_string())?;
    model.set_lstm_path(lstm);
    let params = builder.build(device).map_err(|e| e.to_string())?;
    if let Some(report) = &job.data_report {
        eprintln!("data: {report}");
    }
    if !quiet {
        eprintln!(
            "training {} on {}\n{}",
            job.name,
            device.name(),
            model.summary_table(&params)
        );
    }
    let opts = kiln_train::RunOptions {
        out: Some(out.clone()),
        resume,
        verbose: if quiet { 2 } else { 1 },
        metadata: job.metadata.clone(),
    };
    let trained = kiln_train::fit(
        &*model,
        &params,
        &job.train,
        job.val.as_ref(),
        &job.config,
        &opts,
    )
    .map_err(|e| e.to_string())?;
    let (loss, metric) = kiln_train::evaluate(
        &*model,
        &params,
        &job.train,
        job.config.batch,
        &job.config.loss,
    )
    .map_err(|e| e.to_string())?;
    let name = &trained.history.metric;
    println!("final training loss {loss:.4}, {name} {metric:.4}");
    if let Some((epoch, a)) = trained.history.best_val() {
        println!("best validation {name} {a:.4} at epoch {epoch}");
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    let device = open_device(&cli.device)?;
    match cli.command {
        Command::Train(args) => train(&device, args)?,
        Command::Eval {
            task,
            model,
            data,
            json,
            pictures,
            limit,
        } => {
            if task == "qqp" {
                let r = crate::qqp::eval(&device, &model, data.as_deref(), limit)?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
                    );
                } else {
                    println!(
                        "{}: {} pairs of {} ({}): accuracy {:.4}, loss {:.4}",
                        model.display(),
                        r.pairs,
                        r.data.display(),
                        r.rows,
                        r.accuracy,
                        r.loss
                    );
                }
                return Ok(());
            }
            if task != "mnist" {
                return Err(format!(
                    "unknown task `{task}`; kiln eval knows mnist and qqp"
                ));
            }
            let data = data.unwrap_or_else(crate::data::mnist::default_dir);
            let pictures =
                pictures.unwrap_or_else(|| model.parent().map(PathBuf::from).unwrap_or_default());
            let report = crate::eval::mnist(&device, &model, &data, Some(&pictures), limit)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                println!(
                    "{}: {} test images, accuracy {:.4}, loss {:.4}",
                    model.display(),
                    report.samples,
                    report.accuracy,
                    report.loss
                );
                println!("confusion (rows: true digit, columns: predicted):");
                for (t, row) in report.confusion.iter().enumerate() {
                    println!(
                        "  {t}: {}",
                        row.iter().map(|c| format!("{c:5}")).collect::<String>()
                    );
                }
                println!(
                    "pictures: {}, {}",
                    pictures.join("test_digits.png").display(),
                    pictures.join("confusion.png").display()
                );
            }
        }
        Command::Predict {
            task,
            model,
            questions,
            data,
            out,
            force,
        } => {
            if task != "qqp" {
                return Err(format!("unknown task `{task}`; kiln predict knows qqp"));
            }
            match (data, questions.as_slice()) {
                (Some(data), []) => {
                    let n = crate::qqp::submission(&device, &model, &data, &out, force)?;
                    println!("wrote {} ({n} pairs)", out.display());
                }
                (None, [q1, q2]) => {
                    let m = crate::qqp::load(&device, &model)?;
                    let pair = crate::data::qqp::Pair {
                        id: "0".into(),
                        q1: q1.clone(),
                        q2: q2.clone(),
                        label: None,
                    };
                    let p = m.predict(&device, &[pair])?[0];
                    println!("{p:.4}");
                }
                _ => {
                    return Err(
                        "give two questions, or --data FILE for a submission file (not both)"
                            .into(),
                    )
                }
            }
        }
        Command::Export {
            task,
            data,
            len,
            seed,
            out,
        } => {
            if task != "qqp" {
                return Err(format!("unknown task `{task}`; kiln export knows qqp"));
            }
            let pre = crate::data::qqp::Preprocess {
                len,
                split_seed: seed,
                ..Default::default()
            };
            crate::qqp::export(data.as_deref(), &pre, &out)?;
            eprintln!("wrote {}", out.display());
        }
        Command::Info => info(&device),
        Command::Bench {
            filter,
            json,
            repeats,
            quick,
        } => {
            let opts = bench::Options {
                filter,
                repeats,
                quick,
            };
            eprintln!("kiln bench on {}", device.name());
            let records = bench::run(&device, &opts).map_err(|e| e.to_string())?;
            print!("{}", bench::table(&records));
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
                std::fs::write(&path, text + "\n")
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// Parses `args` (program name first) and runs the command; errors print as `kiln: error: ...`.
pub fn main_with(args: impl IntoIterator<Item = String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln: error: {e}");
            ExitCode::FAILURE
        }
    }
}
