//! Quora Question Pairs: loaders for Quora's original TSV and Kaggle's `train.csv` / `test.csv`,
//! and the tokenizer of the seed's pipeline.
//!
//! Formats are told apart by their header. Fields are parsed with a quote-aware reader (a question
//! may hold a newline). Rows with a missing field, an empty question or a label that is not 0/1 are
//! counted and reported, or refused with `strict`; never dropped silently.
//!
//! Tokenizer: lowercase, letters and digits kept (anything else separates words), a word index
//! ordered by frequency (ties by first appearance, as Keras's `Tokenizer`) fitted on the training
//! split only; id 0 is padding, id 1 out-of-vocabulary, words from 2. Each question is padded at the
//! end and truncated at the front to a fixed length (Keras's `pad_sequences(padding='post')`,
//! whose default truncation is 'pre'), and a pair is q1 followed by q2.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error as DataError;

/// A question pair as a file holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// `id` (training files) or `test_id` (Kaggle's test.csv).
    pub id: String,
    /// The first question.
    pub q1: String,
    /// The second question.
    pub q2: String,
    /// None in Kaggle's test.csv.
    pub label: Option<u8>,
}

/// Which file layout a header names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Quora's original TSV: id, qid1, qid2, question1, question2, is_duplicate.
    QuoraTsv,
    /// Kaggle's train.csv: the same columns, comma-separated and quoted.
    KaggleTrain,
    /// Kaggle's test.csv: test_id, question1, question2 (no labels).
    KaggleTest,
}

/// What a load found, row by row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Records read.
    pub rows: usize,
    /// Records kept.
    pub kept: usize,
    /// Records skipped for a missing field.
    pub missing_field: usize,
    /// Records skipped for an empty question.
    pub empty_question: usize,
    /// Records skipped for a label that is not 0 or 1.
    pub bad_label: usize,
    /// Records whose quoted field runs on over lines that are records of their own (an unclosed
    /// quote): the lines it swallowed are not read as rows.
    pub swallowed: usize,
    /// The first few problems, "record N (lines a-b): what".
    pub examples: Vec<String>,
}

impl LoadReport {
    /// Records skipped, for any reason.
    pub fn skipped(&self) -> usize {
        self.missing_field + self.empty_question + self.bad_label + self.swallowed
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rows, {} kept; skipped {} with a missing field, {} with an empty question, {} with a label not 0/1, {} swallowing other records (an unclosed quote)",
            self.rows, self.kept, self.missing_field, self.empty_question, self.bad_label, self.swallowed
        )?;
        if !self.examples.is_empty() {
            write!(f, " (e.g. {})", self.examples.join("; "))?;
        }
        Ok(())
    }
}

fn detect(header: &str) -> Option<(Format, u8)> {
    let h = header.trim_start_matches('\u{feff}').trim();
    if h.starts_with("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate") {
        Some((Format::QuoraTsv, b'\t'))
    } else if h.starts_with("\"id\",\"qid1\"")
        || h.starts_with("id,qid1,qid2,question1,question2,is_duplicate")
    {
        Some((Format::KaggleTrain, b','))
    } else if h.starts_with("\"test_id\"") || h.starts_with("test_id,question1,question2") {
        Some((Format::KaggleTest, b','))
    } else {
        None
    }
}

/// The longest question a field may hold before it counts as swallowing records: Quora's
/// longest are about 1,200 characters.
const MAX_QUESTION_CHARS: usize = 4000;

/// Whether `line` (inside a quoted field) starts the way a record of `format` starts: numeric
/// ids and the delimiter (`12\t24\t25\t` or `"12","24","25",`).
fn looks_like_record(line: &str, format: Format) -> bool {
    let (delimiter, ids) = match format {
        Format::QuoraTsv => ('\t', 3),
        Format::KaggleTrain => (',', 3),
        Format::KaggleTest => (',', 1),
    };
    let mut fields = line.split(delimiter);
    (0..ids).all(|_| {
        fields.next().is_some_and(|f| {
            let f = f.trim().trim_matches('"');
            !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())
        })
    }) && fields.next().is_some()
}

/// What a file is read for: training and evaluation skip (and report) rows they cannot use, or
/// refuse them with `strict`; prediction keeps every row it can read (an empty question is an
/// empty input; labels are not needed) and refuses the file when a row cannot be read, so that
/// its output has one row per input row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Labelled rows for training or evaluation.
    Labelled {
        /// Refuse the file at its first bad row instead of skipping it.
        strict: bool,
    },
    /// Every row, in order, for predictions.
    Predict,
}

/// Reads pairs from either format. With `strict`, any bad row is an error naming it.
pub fn load(path: &Path, strict: bool) -> Result<(Format, Vec<Pair>, LoadReport), DataError> {
    load_for(path, Purpose::Labelled { strict })
}

/// Reads pairs from either format for `purpose`.
pub fn load_for(
    path: &Path,
    purpose: Purpose,
) -> Result<(Format, Vec<Pair>, LoadReport), DataError> {
    let bad = |message: String| DataError::Bad {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
        hint: "--data names a file: Quora's TSV, or Kaggle's train.csv or test.csv",
    })?;
    let header = text.lines().next().unwrap_or_default();
    let (format, delimiter) = detect(header).ok_or_else(|| {
        bad(format!(
            "unknown header {:?}; expected Quora's TSV (id qid1 qid2 question1 question2 is_duplicate) or Kaggle's train.csv / test.csv",
            header.chars().take(80).collect::<String>()
        ))
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let predict = purpose == Purpose::Predict;
    let strict = matches!(purpose, Purpose::Labelled { strict: true });
    let (mut pairs, mut report) = (vec![], LoadReport::default());
    let mut records = reader.records().enumerate().peekable();
    while let Some((n, record)) = records.next() {
        let record = record.map_err(|e| bad(format!("record {}: {e}", n + 1)))?;
        let first_line = record.position().map_or(0, |p| p.line());
        let last_line = match records.peek() {
            Some((_, Ok(next))) => next.position().map_or(first_line, |p| p.line() - 1),
            _ => text.lines().count() as u64,
        };
        report.rows += 1;
        let field = |i: usize| record.get(i).map(str::to_string);
        let (id, q1, q2, label) = match format {
            Format::QuoraTsv | Format::KaggleTrain => {
                (field(0), field(3), field(4), Some(field(5)))
            }
            Format::KaggleTest => (field(0), field(1), field(2), None),
        };
        let problem = classify((&id, &q1, &q2, &label), format, predict, &mut report);
        if let Some(what) = problem {
            let lines = if last_line > first_line {
                format!("lines {first_line}-{last_line}")
            } else {
                format!("line {first_line}")
            };
            let where_ = format!(
                "record {} ({lines}, id {})",
                n + 1,
                crate::clip(&id.clone().unwrap_or_default())
            );
            if predict {
                return Err(bad(format!(
                    "{where_} has {what}; predictions are one row per input row, so fix the file"
                )));
            }
            if strict {
                return Err(bad(format!(
                    "{where_} has {what}; drop --strict to skip such rows"
                )));
            }
            if report.examples.len() < 3 {
                report.examples.push(format!("{where_}: {what}"));
            }
            continue;
        }
        pairs.push(Pair {
            id: id.expect("checked"),
            q1: q1.expect("checked"),
            q2: q2.expect("checked"),
            label: label
                .flatten()
                .and_then(|l| l.trim().parse().ok())
                .filter(|&l: &u8| l <= 1),
        });
        report.kept += 1;
    }
    Ok((format, pairs, report))
}

/// One record's (id, question 1, question 2, label: None in Kaggle's test.csv, Some(None) when
/// missing) fields.
type Fields<'a> = (
    &'a Option<String>,
    &'a Option<String>,
    &'a Option<String>,
    &'a Option<Option<String>>,
);

/// What makes a record unusable, if anything, counted in `report`: a quoted field that swallowed
/// other records, a missing field, and (unless predicting) an empty question or a label that is
/// not 0 or 1.
fn classify(
    fields: Fields,
    format: Format,
    predict: bool,
    report: &mut LoadReport,
) -> Option<&'static str> {
    let (_, q1, q2, _) = fields;
    // A field that holds line ends and runs long, or holds a line that starts like a record,
    // swallowed records (an unclosed quote). A long question on one line is just long.
    let swallows = [q1, q2].iter().any(|q| {
        q.as_ref().is_some_and(|q| {
            q.contains('\n')
                && (q.chars().count() > MAX_QUESTION_CHARS
                    || q.lines().skip(1).any(|l| looks_like_record(l, format)))
        })
    });
    match fields {
        _ if swallows => {
            report.swallowed += 1;
            Some("a quoted field that runs on over other records (an unclosed quote?)")
        }
        (None, _, _, _) | (_, None, _, _) | (_, _, None, _) => {
            report.missing_field += 1;
            Some("a missing field")
        }
        (_, _, _, Some(None)) if !predict => {
            report.missing_field += 1;
            Some("a missing field")
        }
        (_, Some(a), Some(b), _) if !predict && (a.trim().is_empty() || b.trim().is_empty()) => {
            report.empty_question += 1;
            Some("an empty question")
        }
        (_, _, _, Some(Some(l))) if !predict && l.trim() != "0" && l.trim() != "1" => {
            report.bad_label += 1;
            Some("a label that is not 0 or 1")
        }
        _ => None,
    }
}

/// Lowercased words: runs of letters and digits.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The padding id.
pub const PAD: u32 = 0;
/// The id of a word outside the vocabulary.
pub const OOV: u32 = 1;

/// A word index, fitted on training text; saved with the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tokenizer {
    /// Words by id - 2 (id 0 is padding, id 1 out-of-vocabulary).
    pub words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Tokenizer {
    /// Fits on `texts`: words by descending frequency, ties in order of first appearance; at most
    /// `cap` words when given.
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>, cap: Option<usize>) -> Tokenizer {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        let mut order = 0;
        for text in texts {
            for w in words(text) {
                let e = counts.entry(w).or_insert_with(|| {
                    order += 1;
                    (0, order)
                });
                e.0 += 1;
            }
        }
        let mut ranked: Vec<(String, (usize, usize))> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        ranked.truncate(cap.unwrap_or(usize::MAX));
        Tokenizer::from_words(ranked.into_iter().map(|(w, _)| w).collect())
    }

    /// A tokenizer of `words` (ids 2, 3, ... in order).
    pub fn from_words(words: Vec<String>) -> Tokenizer {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32 + 2))
            .collect();
        Tokenizer { words, index }
    }

    /// Ids 0 (padding), 1 (out-of-vocabulary) and the words.
    pub fn vocab_size(&self) -> usize {
        self.words.len() + 2
    }

    /// `word`'s id, or [`OOV`].
    pub fn id(&self, word: &str) -> u32 {
        self.index.get(word).copied().unwrap_or(OOV)
    }

    /// `len` ids: the text's words, the front truncated when longer, zeros after when shorter.
    pub fn encode(&self, text: &str, len: usize) -> Vec<u32> {
        let ids: Vec<u32> = words(text).map(|w| self.id(&w)).collect();
        let mut out: Vec<u32> = ids[ids.len().saturating_sub(len)..].to_vec();
        out.resize(len, PAD);
        out
    }

    /// q1's ids then q2's, each `len` long.
    pub fn encode_pair(&self, q1: &str, q2: &str, len: usize) -> Vec<u32> {
        let mut v = self.encode(q1, len);
        v.extend(self.encode(q2, len));
        v
    }

    /// The words as JSON (what a model's `vocabulary` metadata holds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.words).expect("words serialize")
    }

    /// Reads [`Tokenizer::to_json`]'s form, refusing empty or repeated words.
    pub fn from_json(text: &str) -> Result<Tokenizer, String> {
        let words: Vec<String> = serde_json::from_str(text)
            .map_err(|e| format!("vocabulary: {}", crate::clip(&e.to_string())))?;
        let mut seen = std::collections::HashSet::new();
        if let Some(w) = words
            .iter()
            .find(|w| w.is_empty() || !seen.insert(w.as_str()))
        {
            return Err(format!(
                "vocabulary: the word `{}` is empty or listed twice; the file was edited",
                crate::clip(w)
            ));
        }
        Ok(Tokenizer::from_words(words))
    }
}

/// numpy's legacy `np.random.RandomState(seed).permutation(n)`: MT19937 seeded by `init_genrand`,
/// then a Fisher-Yates shuffle from the end, each index drawn by masked rejection sampling
/// (numpy's `random_interval`). Matching it makes kiln's split sklearn's.
pub fn numpy_permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut mt = rand_mt::Mt::new(seed);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let max = i as u64;
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        let j = loop {
            let v = if max <= u32::MAX as u64 {
                (mt.next_u32() as u64) & mask
            } else {
                mt.next_u64() & mask
            };
            if v <= max {
                break v as usize;
            }
        };
        perm.swap(i, j);
    }
    perm
}

/// sklearn's `train_test_split(..., test_size, random_state=seed)` on `n` rows: the test rows are
/// the first ceil(test_size * n) of numpy's permutation, the training rows the rest, in that order.
pub fn sklearn_split(n: usize, test_size: f64, seed: u32) -> (Vec<usize>, Vec<usize>) {
    let n_test = (test_size * n as f64).ceil() as usize;
    let perm = numpy_permutation(n, seed);
    let (test, train) = perm.split_at(n_test.min(n));
    (train.to_vec(), test.to_vec())
}

/// How `kiln train qqp` turns pairs into ids; the seed's settings are the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Ids per question (padded at the end, truncated at the front).
    pub len: usize,
    /// At most this many words in the vocabulary (the most frequent).
    pub vocab_cap: Option<usize>,
    /// Fraction held out for validation.
    pub test_size: f64,
    /// Seed of the split (sklearn's random_state).
    pub split_seed: u32,
}

/// The most ids per question: Quora's longest questions have about 250 words.
pub const MAX_LEN: usize = 1000;

impl Preprocess {
    /// Checks settings read from a saved model's metadata (`qqp_preprocess`), which an edit may
    /// have broken: ids per question in 1..=[`MAX_LEN`], a validation fraction in (0, 1), a
    /// vocabulary cap of at least 1.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_LEN).contains(&self.len) {
            return Err(format!(
                "len {}: ids per question are 1..={MAX_LEN} (the seed uses 31)",
                self.len
            ));
        }
        if !(self.test_size > 0.0 && self.test_size < 1.0) {
            return Err(format!(
                "test_size {}: the validation fraction is in (0, 1) (the seed uses 0.2)",
                self.test_size
            ));
        }
        if self.vocab_cap == Some(0) {
            return Err("vocab_cap 0 leaves no words; it is at least 1 (or absent)".into());
        }
        Ok(())
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            len: 31,
            vocab_cap: None,
            test_size: 0.2,
            split_seed: 2019,
        }
    }
}

/// Pairs as a dataset: ids (N, 2 * len), q1's then q2's; labels (N, 1), 0 where unknown.
pub fn encode(pairs: &[Pair], tokenizer: &Tokenizer, len: usize) -> kiln_train::Dataset {
    kiln_train::Dataset::single(
        kiln_train::Column::ids(
            pairs
                .iter()
                .flat_map(|p| tokenizer.encode_pair(&p.q1, &p.q2, len))
                .collect(),
            &[2 * len],
        ),
        kiln_train::Column::f32(
            pairs.iter().map(|p| p.label.unwrap_or(0) as f32).collect(),
            &[1],
        ),
    )
}

/// A labelled file, split and encoded for training.
pub struct Prepared {
    /// The training split.
    pub train: kiln_train::Dataset,
    /// The validation split.
    pub val: kiln_train::Dataset,
    /// The tokenizer, fitted on the training split.
    pub tokenizer: Tokenizer,
    /// What loading found.
    pub report: LoadReport,
    /// The file's layout.
    pub format: Format,
}

/// Loads `path` (Quora's TSV or Kaggle's train.csv), splits it as sklearn would, fits the
/// tokenizer on the training questions only, and encodes both splits.
pub fn prepare(path: &Path, pre: &Preprocess, strict: bool) -> Result<Prepared, DataError> {
    let (format, pairs, report) = load(path, strict)?;
    if format == Format::KaggleTest {
        return Err(DataError::Bad {
            path: path.to_path_buf(),
            message:
                "Kaggle's test.csv has no labels to train on; use it with `kiln predict qqp --data`"
                    .into(),
        });
    }
    if pairs.len() < 2 {
        return Err(DataError::Bad {
            path: path.to_path_buf(),
            message: format!(
                "{} usable pairs; training needs at least 2 ({report})",
                pairs.len()
            ),
        });
    }
    let (train_rows, val_rows) = split_rows(pairs.len(), pre);
    let pick = |rows: &[usize]| rows.iter().map(|&i| pairs[i].clone()).collect::<Vec<_>>();
    let (train_pairs, val_pairs) = (pick(&train_rows), pick(&val_rows));
    let tokenizer = Tokenizer::fit(
        train_pairs
            .iter()
            .flat_map(|p| [p.q1.as_str(), p.q2.as_str()]),
        pre.vocab_cap,
    );
    Ok(Prepared {
        train: encode(&train_pairs, &tokenizer, pre.len),
        val: encode(&val_pairs, &tokenizer, pre.len),
        tokenizer,
        report,
        format,
    })
}

/// (training rows, validation rows) of a file of `n` usable pairs.
pub fn split_rows(n: usize, pre: &Preprocess) -> (Vec<usize>, Vec<usize>) {
    sklearn_split(n, pre.test_size, pre.split_seed)
}
