//! `kiln eval` and `kiln predict`: a saved model applied to data.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::cli::flags::at_least_one;
use crate::cli::{check_outputs, outln, print_json, Classify, CliError, LazyDevice};

/// Tasks `kiln eval` knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalTask {
    /// A `kiln train mnist` model on the MNIST test set.
    Mnist,
    /// A `kiln train qqp` model on labelled question pairs.
    Qqp,
}

/// Tasks `kiln predict` and `kiln export` know by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PredictTask {
    /// Quora Question Pairs.
    Qqp,
}

/// `kiln eval`'s arguments.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// mnist or qqp for the built-in jobs' models; leave it out for a model trained from a data
    /// file.
    task: Option<EvalTask>,
    /// The saved model (OUT/model.safetensors or OUT/best.safetensors of a `kiln train` run).
    #[arg(long)]
    model: PathBuf,
    /// mnist: folder with the IDX files (default: the embedded data/mnist). qqp: Quora's TSV or
    /// Kaggle's train.csv (default: the embedded data's validation split). Other models: a
    /// labelled CSV or image folder.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// mnist: where to draw test_digits.png and confusion.png (default: the model's folder; they
    /// are redrawn every time).
    #[arg(long)]
    pictures: Option<PathBuf>,
    /// mnist, qqp: evaluate on the first N samples only.
    #[arg(long)]
    limit: Option<usize>,
    /// qqp and models trained from a data file: refuse a file with rows that cannot be evaluated
    /// instead of skipping (and reporting) them.
    #[arg(long)]
    strict: bool,
}

impl EvalArgs {
    /// Refuses flags the task does not take.
    pub fn validate(&self) -> Result<(), CliError> {
        at_least_one("--limit", self.limit, "evaluates nothing")?;
        let usage = |m: &str| Err(CliError::usage(m));
        match self.task {
            None if self.pictures.is_some() || self.limit.is_some() => {
                usage("--pictures and --limit apply to `kiln eval mnist` and `kiln eval qqp` only")
            }
            None if self.data.is_none() => usage(
                "a model trained from a data file is evaluated on one like it: --data FILE or --data DIR",
            ),
            Some(EvalTask::Mnist) if self.strict => usage(
                "--strict applies to `kiln eval qqp` and models trained from a data file",
            ),
            Some(EvalTask::Qqp) if self.pictures.is_some() => {
                usage("--pictures applies to `kiln eval mnist` only")
            }
            _ => Ok(()),
        }
    }

    /// Evaluates and prints the report.
    pub fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        match self.task {
            None => self.files(device),
            Some(EvalTask::Qqp) => self.qqp(device),
            Some(EvalTask::Mnist) => self.mnist(device),
        }
    }

    fn files(self, device: &LazyDevice) -> Result<(), CliError> {
        let data = self.data.as_deref().expect("validated");
        let r = crate::files::eval(device.get()?, &self.model, data, self.strict).data()?;
        if self.json {
            return print_json(&r);
        }
        outln!(
            "{}: {} rows of {}: {} {:.4}, loss {:.4}{}",
            self.model.display(),
            r.rows,
            r.data.display(),
            r.metric,
            r.value,
            r.loss,
            tracked_text(&r.tracked)
        );
        if r.skipped > 0 {
            outln!(
                "skipped {} rows (--strict refuses them): {}",
                r.skipped,
                r.skipped_examples.join("; ")
            );
        }
        Ok(())
    }

    fn qqp(self, device: &LazyDevice) -> Result<(), CliError> {
        let r = crate::qqp::eval(
            device.get()?,
            &self.model,
            self.data.as_deref(),
            self.limit,
            self.strict,
        )
        .data()?;
        if self.json {
            return print_json(&r);
        }
        outln!(
            "{}: {} pairs of {} ({}): accuracy {:.4}, loss {:.4}{}",
            self.model.display(),
            r.pairs,
            r.data.display(),
            r.rows,
            r.accuracy,
            r.loss,
            tracked_text(&r.tracked)
        );
        if r.skipped_rows > 0 {
            outln!(
                "{}: {} (--strict refuses them)",
                r.data.display(),
                r.skipped
            );
        }
        Ok(())
    }

    fn mnist(self, device: &LazyDevice) -> Result<(), CliError> {
        let data = self
            .data
            .clone()
            .unwrap_or_else(crate::data::mnist::default_dir);
        let pictures = self
            .pictures
            .clone()
            .unwrap_or_else(|| self.model.parent().map(PathBuf::from).unwrap_or_default());
        let report = crate::eval::mnist(
            device.get()?,
            &self.model,
            &data,
            Some(&pictures),
            self.limit,
        )
        .data()?;
        if self.json {
            return print_json(&report);
        }
        outln!(
            "{}: {} test images, accuracy {:.4}, loss {:.4}{}",
            self.model.display(),
            report.samples,
            report.accuracy,
            report.loss,
            tracked_text(&report.tracked)
        );
        outln!("confusion (rows: true digit, columns: predicted):");
        for (t, row) in report.confusion.iter().enumerate() {
            let cells: String = row.iter().map(|c| format!("{c:5}")).collect();
            outln!("  {t}: {cells}");
        }
        outln!(
            "pictures: {}, {}",
            pictures.join("test_digits.png").display(),
            pictures.join("confusion.png").display()
        );
        Ok(())
    }
}

/// `kiln predict`'s arguments.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// qqp for the seed's model; leave it out for a model trained from a data file.
    task: Option<PredictTask>,
    /// The saved model.
    #[arg(long)]
    model: PathBuf,
    /// qqp: the two questions.
    questions: Vec<String>,
    /// A file (or image folder) to predict every row of: writes --out.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The CSV written with --data (default: submission.csv for qqp, else predictions.csv).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite --out when it exists.
    #[arg(long)]
    force: bool,
}

impl PredictArgs {
    /// Refuses arguments that do not go together.
    pub fn validate(&self) -> Result<(), CliError> {
        let usage = |m: &str| Err(CliError::usage(m));
        match (self.task, &self.data, self.questions.len()) {
            (None, _, n) if n > 0 => usage(
                "give a model trained from a data file --data FILE (or DIR); questions on the command line are for `kiln predict qqp`",
            ),
            (None, None, _) => usage("--data FILE (or DIR): what to predict"),
            (Some(_), Some(_), n) if n > 0 => usage(
                "give two questions, or --data FILE for a submission file (not both)",
            ),
            (Some(_), None, 2) if self.out.is_some() || self.force => usage(
                "--out and --force apply to predictions of a file (--data); two questions print one probability",
            ),
            (Some(_), None, n) if n != 2 => usage(
                "give two questions, or --data FILE for a submission file (not both)",
            ),
            _ => Ok(()),
        }
    }

    /// Predicts and writes (or prints) the predictions.
    pub fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        match (self.task, &self.data) {
            (None, Some(data)) => {
                let out = self.out.clone().unwrap_or_else(|| "predictions.csv".into());
                check_outputs([&out], self.force)?;
                let (csv, n) =
                    crate::files::predictions(device.get()?, &self.model, data).data()?;
                kiln_graph::checkpoint::write_atomic(&out, &csv).runtime()?;
                outln!("wrote {} ({n} rows)", out.display());
            }
            (Some(PredictTask::Qqp), Some(data)) => {
                let out = self.out.clone().unwrap_or_else(|| "submission.csv".into());
                check_outputs([&out], self.force)?;
                let (csv, n) =
                    crate::qqp::submission_csv(device.get()?, &self.model, data).data()?;
                kiln_graph::checkpoint::write_atomic(&out, &csv).runtime()?;
                outln!("wrote {} ({n} pairs)", out.display());
            }
            (Some(PredictTask::Qqp), None) => {
                let device = device.get()?;
                let m = crate::qqp::load(device, &self.model).data()?;
                let pair = crate::data::qqp::Pair {
                    id: "0".into(),
                    q1: self.questions[0].clone(),
                    q2: self.questions[1].clone(),
                    label: None,
                };
                let p = m.predict(device, &[pair]).runtime()?[0];
                outln!("{p:.4}");
            }
            (None, None) => unreachable!("validated"),
        }
        Ok(())
    }
}

/// `, auc 0.9312, precision 0.8800`: the tracked metrics after a report's loss.
fn tracked_text(tracked: &[(String, f32)]) -> String {
    tracked
        .iter()
        .map(|(name, v)| format!(", {name} {v:.4}"))
        .collect()
}
