//! The fuzzing tier in CI: generated inputs, a bounded number per loader, through the entry
//! points of `kiln::fuzz` (the same ones `fuzz/` runs under cargo-fuzz for longer). A panic
//! fails the test; proptest prints the smallest input that shows it.

use kiln::fuzz;
use proptest::prelude::*;

/// 96 cases per loader in CI; `KILN_FUZZ_CASES=100000` for a longer hunt.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("KILN_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text from an alphabet rich in what parsers trip on: delimiters, quotes, line ends, digits.
fn texty(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            '\t', ',', '"', '\n', '\r', '0', '1', '2', '9', 'a', 'Q', ' ', '?', '-', '.', 'é',
            '\u{feff}',
        ]),
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

const QQP_HEADERS: [&str; 4] = [
    "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n",
    "\"id\",\"qid1\",\"qid2\",\"question1\",\"question2\",\"is_duplicate\"\n",
    "\"test_id\",\"question1\",\"question2\"\n",
    "",
];

fn layer() -> impl Strategy<Value = String> {
    let ty = prop::sample::select(vec![
        "dense",
        "embedding",
        "lstm",
        "simple_rnn",
        "bidirectional",
        "dropout",
        "activation",
        "flatten",
        "conv2d",
        "max_pool2d",
        "avg_pool2d",
        "stochastic_pool2d",
        "global_avg_pool",
        "layer_normalization",
        "bogus",
    ]);
    let number = prop::sample::select(vec![
        "0",
        "1",
        "2",
        "3",
        "7",
        "64",
        "-1",
        "0.5",
        "1e12",
        "18446744073709551615",
        "\"x\"",
        "null",
    ]);
    let field = prop::sample::select(vec![
        "units",
        "vocab",
        "dim",
        "rate",
        "filters",
        "kernel",
        "size",
        "stride",
        "padding",
        "epsilon",
        "return_sequences",
        "mask_zero",
        "activation",
        "layer",
        "bogus",
    ]);
    (ty, prop::collection::vec((field, number), 0..4)).prop_map(|(ty, fields)| {
        let mut parts = vec![format!("\"type\": \"{ty}\"")];
        parts.extend(fields.into_iter().map(|(f, v)| format!("\"{f}\": {v}")));
        format!("{{{}}}", parts.join(", "))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn qqp_files(header in 0..QQP_HEADERS.len(), body in texty(300)) {
        fuzz::qqp_file(format!("{}{body}", QQP_HEADERS[header]).as_bytes());
    }

    #[test]
    fn idx_files(valid in any::<bool>(), count in any::<u32>(), tail in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = vec![];
        if valid {
            bytes.extend(2051u32.to_be_bytes());
            bytes.extend(count.to_be_bytes());
            bytes.extend(28u32.to_be_bytes());
            bytes.extend(28u32.to_be_bytes());
        }
        bytes.extend(tail);
        fuzz::idx_file(&bytes);
    }

    #[test]
    fn model_files(input in prop::collection::vec(prop::sample::select(vec![0usize, 1, 2, 5, 28, 1 << 40]), 0..4),
                   layers in prop::collection::vec(layer(), 0..5),
                   raw in texty(60)) {
        let input: Vec<String> = input.iter().map(|d| d.to_string()).collect();
        let json = format!("{{\"input\": [{}], \"layers\": [{}]}}", input.join(", "), layers.join(", "));
        fuzz::model_json(json.as_bytes());
        fuzz::model_json(raw.as_bytes());
    }

    #[test]
    fn checkpoint_files(bytes in prop::collection::vec(any::<u8>(), 0..300), header_len in 0u64..400) {
        fuzz::checkpoint_file(&bytes);
        // A plausible header length in front of arbitrary JSON-ish bytes.
        let mut framed = header_len.to_le_bytes().to_vec();
        framed.extend(b"{\"__metadata__\":{\"format\":\"kiln-1\"},\"param.w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
        framed.extend(&bytes);
        fuzz::checkpoint_file(&framed);
    }

    #[test]
    fn data_tables(header in prop::sample::select(vec!["a,b,label\n", "x,y\n", "text,label\n", ""]),
                   body in texty(300)) {
        fuzz::table_file(format!("{header}{body}").as_bytes());
    }
}
