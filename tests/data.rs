//! The MNIST loader on broken files: every problem is an error naming the file and what is wrong.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_cli::data::mnist::{read_idx, DataError};

fn gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap();
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-data-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(payload);
    v
}

fn message(r: Result<(usize, Vec<u8>), DataError>) -> String {
    r.expect_err("an error").to_string()
}

#[test]
fn a_good_file_reads_and_broken_ones_are_named() {
    let d = dir("broken");
    let good = d.join("good.gz");
    gz(&good, &idx(2051, &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]));
    let (n, bytes) = read_idx(&good, 2051, &[2, 2], None).unwrap();
    assert_eq!((n, bytes), (2, vec![1, 2, 3, 4, 5, 6, 7, 8]));

    let truncated = d.join("truncated.gz");
    let full = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &full[..full.len() - 6]).unwrap();
    let m = message(read_idx(&truncated, 2051, &[2, 2], None));
    assert!(
        m.contains("truncated.gz") && m.contains("truncated or corrupt"),
        "{m}"
    );

    let m = message(read_idx(
        &good,
        2051,
        &[2, 2],
        Some("00000000000000000000000000000000"),
    ));
    assert!(m.contains("good.gz") && m.contains("md5"), "{m}");

    let m = message(read_idx(&good, 2049, &[], None));
    assert!(m.contains("magic number 2051, expected 2049"), "{m}");

    let m = message(read_idx(&good, 2051, &[28, 28], None));
    assert!(m.contains("dimension 1 is 2, expected 28"), "{m}");

    let short = d.join("short.gz");
    gz(&short, &idx(2051, &[3, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]));
    let m = message(read_idx(&short, 2051, &[2, 2], None));
    assert!(m.contains("24 bytes for 3 items, expected 28"), "{m}");

    // A gzip bomb: inflation stops at the size the header declares.
    let bomb = d.join("bomb.gz");
    gz(&bomb, &idx(2051, &[1, 2, 2], &vec![7u8; 1 << 20]));
    let m = message(read_idx(&bomb, 2051, &[2, 2], None));
    assert!(
        m.contains("more data than the 1 items its header declares"),
        "{m}"
    );
    let huge = d.join("huge.gz");
    gz(&huge, &idx(2051, &[u32::MAX, 28, 28], &[0; 16]));
    let m = message(read_idx(&huge, 2051, &[28, 28], None));
    assert!(m.contains("over kiln's limit"), "{m}");

    let missing = d.join("missing.gz");
    let m = message(read_idx(&missing, 2051, &[2, 2], None));
    assert!(m.contains("missing.gz") && m.contains("--data"), "{m}");
}

#[test]
fn the_embedded_mnist_test_set_loads_with_its_checksums() {
    let test = kiln_cli::data::mnist::load_test(&kiln_cli::data::mnist::default_dir()).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.input().shape, vec![1, 28, 28]);
    let kiln::train::Values::F32(pixels) = &test.input().values else {
        panic!("f32 pixels")
    };
    assert!(pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    // The first test digit is a 7.
    let kiln::train::Values::F32(targets) = &test.targets.values else {
        panic!("one-hot f32 targets")
    };
    assert_eq!(targets[..10].iter().position(|&v| v == 1.0), Some(7));
}

mod qqp {
    use super::dir;
    use kiln_cli::data::qqp::*;

    #[test]
    fn the_embedded_quora_file_has_every_pair_and_the_quoted_newline() {
        let (format, pairs, report) = load(&default_path(), true).unwrap();
        assert_eq!(format, Format::QuoraTsv);
        assert_eq!(
            (report.rows, report.kept, report.skipped()),
            (9998, 9998, 0)
        );
        let dups = pairs.iter().filter(|p| p.label == Some(1)).count();
        assert_eq!((pairs.len() - dups, dups), (6288, 3710));
        assert!(
            pairs
                .iter()
                .any(|p| p.q1.contains('\n') || p.q2.contains('\n')),
            "the record with a newline inside quotes"
        );
        assert_eq!(
            pairs[0].q1,
            "What is the step by step guide to invest in share market in india?"
        );
    }

    #[test]
    fn an_unclosed_quote_that_swallows_records_is_reported_with_its_lines() {
        let d = dir("swallow");
        let tsv = d.join("quora.tsv");
        std::fs::write(
            &tsv,
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n\
             0\t1\t2\tWhat is one?\tWhat is 1?\t1\n\
             1\t3\t4\t\"An unclosed quote\tAnother\t0\n\
             2\t5\t6\tThird q\tThird other\t0\n\
             3\t7\t8\tFourth q\tFourth other\t1\n",
        )
        .unwrap();
        let (_, pairs, report) = load(&tsv, false).unwrap();
        assert_eq!((report.rows, report.kept, report.swallowed), (2, 1, 1));
        assert_eq!(pairs[0].id, "0");
        let text = report.to_string();
        assert!(
            text.contains("record 2 (lines 3-5, id 1)") && text.contains("unclosed quote"),
            "{text}"
        );
        let err = load(&tsv, true).unwrap_err().to_string();
        assert!(
            err.contains("lines 3-5") && err.contains("--strict"),
            "{err}"
        );
        let err = load_for(&tsv, Purpose::Predict).unwrap_err().to_string();
        assert!(err.contains("lines 3-5"), "{err}");
    }

    #[test]
    fn kaggle_formats_and_bad_rows_are_counted_or_refused() {
        let d = dir("qqp");
        let train = d.join("train.csv");
        std::fs::write(
            &train,
            "\"id\",\"qid1\",\"qid2\",\"question1\",\"question2\",\"is_duplicate\"\n\
             \"0\",\"1\",\"2\",\"What is one?\",\"What is 1?\",\"1\"\n\
             \"1\",\"3\",\"4\",\"A \"\"quoted\"\"\nquestion\",\"Another\",\"0\"\n\
             \"2\",\"5\",\"6\",\"\",\"Empty first\",\"0\"\n\
             \"3\",\"7\",\"8\",\"Bad label\",\"here\",\"2\"\n\
             \"4\",\"9\",\"10\",\"Short row\"\n",
        )
        .unwrap();
        let (format, pairs, report) = load(&train, false).unwrap();
        assert_eq!(format, Format::KaggleTrain);
        assert_eq!((report.rows, report.kept), (5, 2));
        assert_eq!(
            (
                report.empty_question,
                report.bad_label,
                report.missing_field
            ),
            (1, 1, 1)
        );
        assert_eq!(pairs[1].q1, "A \"quoted\"\nquestion");
        assert!(
            report
                .to_string()
                .contains("skipped 1 with a missing field"),
            "{report}"
        );
        let err = load(&train, true).unwrap_err().to_string();
        assert!(
            err.contains("train.csv")
                && err.contains("record 3 (line 5, id 2) has an empty question"),
            "{err}"
        );

        let test = d.join("test.csv");
        std::fs::write(
            &test,
            "\"test_id\",\"question1\",\"question2\"\n\"0\",\"How?\",\"Why?\"\n",
        )
        .unwrap();
        let (format, pairs, _) = load(&test, true).unwrap();
        assert_eq!((format, pairs[0].label), (Format::KaggleTest, None));

        // Predictions keep every row: an empty question is an empty input, labels do not matter;
        // a row that cannot be read refuses the file.
        let err = load_for(&train, Purpose::Predict).unwrap_err().to_string();
        assert!(
            err.contains("record 5 (line 7, id 4) has a missing field")
                && err.contains("one row per input row"),
            "{err}"
        );
        let text = std::fs::read_to_string(&train).unwrap();
        let whole = d.join("whole.csv");
        std::fs::write(&whole, &text[..text.rfind("\"4\"").unwrap()]).unwrap();
        let (_, pairs, _) = load_for(&whole, Purpose::Predict).unwrap();
        let ids: Vec<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["0", "1", "2", "3"]);
        assert_eq!((pairs[2].q1.as_str(), pairs[3].label), ("", None));

        let other = d.join("other.csv");
        std::fs::write(&other, "a,b,c\n1,2,3\n").unwrap();
        assert!(load(&other, false)
            .unwrap_err()
            .to_string()
            .contains("unknown header"));
    }

    #[test]
    fn the_tokenizer_orders_by_frequency_and_pads_and_truncates_like_keras() {
        let t = Tokenizer::fit(
            ["The cat, the DOG!", "the bird and the cat", "a 2nd dog"],
            None,
        );
        // the: 4, cat: 2, dog: 2 (cat first seen earlier), then once-seen words in order of appearance.
        assert_eq!(&t.words[..4], &["the", "cat", "dog", "bird"]);
        assert_eq!((t.id("the"), t.id("cat"), t.id("unknown")), (2, 3, OOV));
        assert_eq!(t.encode("The cat sat", 5), vec![2, 3, OOV, PAD, PAD]);
        assert_eq!(
            t.encode("a b c d e f the", 3),
            vec![OOV, OOV, 2],
            "front truncated"
        );
        assert_eq!(t.encode_pair("the", "cat", 2), vec![2, 0, 3, 0]);
        let capped = Tokenizer::fit(["the cat, the dog"], Some(1));
        assert_eq!((capped.vocab_size(), capped.id("cat")), (3, OOV));
        assert_eq!(Tokenizer::from_json(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn the_split_is_sklearns_train_test_split_with_random_state_2019() {
        // numpy: np.random.RandomState(2019).permutation(10) and permutation(9998)[:8].
        assert_eq!(
            numpy_permutation(10, 2019),
            vec![3, 9, 4, 1, 6, 0, 5, 7, 2, 8]
        );
        assert_eq!(
            &numpy_permutation(9998, 2019)[..8],
            &[5065, 4591, 175, 6341, 7884, 8378, 654, 8205]
        );
        let (train, test) = sklearn_split(9998, 0.2, 2019);
        assert_eq!((train.len(), test.len()), (7998, 2000));
        assert_eq!(test[0], 5065);
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..9998).collect::<Vec<_>>());
    }

    #[test]
    fn prepare_fits_the_vocabulary_on_the_training_split_only() {
        let p = prepare(&default_path(), &Preprocess::default(), false).unwrap();
        assert_eq!((p.train.len(), p.val.len()), (7998, 2000));
        assert_eq!(p.train.input().shape, vec![62]);
        let kiln::train::Values::Ids(ids) = &p.val.input().values else {
            panic!("ids")
        };
        // Some validation words were never seen in training: they map to OOV.
        assert!(ids.contains(&OOV));
        assert!(ids.iter().all(|&i| (i as usize) < p.tokenizer.vocab_size()));
        let test = dir("qqp-prepare").join("test.csv");
        std::fs::write(&test, "test_id,question1,question2\n0,How?,Why?\n").unwrap();
        let e = prepare(&test, &Preprocess::default(), false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no labels"), "{e}");
    }
}
