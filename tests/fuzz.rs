//! The fuzzing tier in CI: generated inputs, a bounded number per loader, through the entry
//! points of `kiln_cli::fuzz` (the same ones `fuzz/` runs under cargo-fuzz for longer). A panic
//! fails the test; proptest prints the smallest input that shows it.

use kiln_cli::fuzz;
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
    // Every type the registry knows (a new layer is fuzzed without an edit here), and one it
    // does not.
    let mut types = kiln::graph::LayerConfig::types();
    types.push("bogus".into());
    let ty = prop::sample::select(types);
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

/// A `kiln_data` spec near a valid one: each field drawn from values that are right, wrong in
/// length, not finite, denormal, duplicated or of another kind.
fn spec() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        r#"["a", "b"]"#,
        r#"["a"]"#,
        r#"[]"#,
        r#"["a", "a"]"#,
        r#"["label", "b"]"#,
        r#"["text"]"#,
        r#""a""#,
    ]);
    let numbers = prop::sample::select(vec![
        "[0, 1]",
        "[0.5, -2]",
        "[1]",
        "[]",
        "[1e39, 0]",
        "[0, 1e-45]",
        "[0, 0]",
        "[1e-38, 3e38]",
        "null",
    ]);
    let classes = prop::sample::select(vec![
        r#"["x", "y"]"#,
        r#"["x"]"#,
        r#"[]"#,
        r#"["x", "x"]"#,
        r#"["x", "y", "z"]"#,
        r#"["", "y"]"#,
    ]);
    let kind = prop::sample::select(vec!["table", "text", "images", "bogus"]);
    let task = prop::sample::select(vec!["classification", "regression", "bogus"]);
    (kind, names, numbers.clone(), numbers, classes, task, 0usize..6).prop_map(
        |(kind, names, mean, std, classes, task, n)| {
            let source = match kind {
                "table" => format!(r#""features": {names}, "mean": {mean}, "std": {std}"#),
                "text" => format!(r#""texts": {names}, "ids_per_text": {n}, "words": ["w", "v"]"#),
                _ => format!(r#""channels": {n}, "height": {n}, "width": 2"#),
            };
            let label = if kind == "images" { "" } else { r#""label": "label", "# };
            format!(
                r#"{{"source": {{"kind": "{kind}", {label}{source}}}, "task": "{task}", "classes": {classes}}}"#
            )
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn table_records(header in prop::sample::select(vec!["a,b,label\n", "a;b\n", "\"a\nb\",c\n", ""]),
                     body in texty(300)) {
        fuzz::table_reader(format!("{header}{body}").as_bytes());
    }

    #[test]
    fn data_specs(spec in spec(), raw in texty(40)) {
        fuzz::data_spec(spec.as_bytes());
        fuzz::data_spec(raw.as_bytes());
    }
}
