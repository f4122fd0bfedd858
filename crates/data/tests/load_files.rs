//! Data loading from Rust (`LoadFiles`): what each kind of file gives (shapes, targets, classes,
//! standardisation), rows skipped and counted or refused, and each kind of error.

use std::path::Path;

use kiln_data::{CsvOptions, Error, LoadFiles, Targets, Task, TextCsvOptions};
use kiln_train::{Dataset, Values};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn f32s(v: &Values) -> &[f32] {
    match v {
        Values::F32(v) => v,
        Values::Ids(_) => panic!("ids, not values"),
    }
}

fn ids(v: &Values) -> &[u32] {
    match v {
        Values::Ids(v) => v,
        Values::F32(_) => panic!("values, not ids"),
    }
}

#[test]
fn a_numeric_table_gives_standardised_features_and_class_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "iris.csv",
        "a,b,species\n1,10,virginica\n2,20,setosa\n3,30,versicolor\n4,,setosa\n5,50,setosa\n",
    );
    let loaded = Dataset::from_csv(&path, &CsvOptions::default()).unwrap();
    let d = &loaded.dataset;
    assert_eq!(d.len(), 4);
    assert_eq!(loaded.skipped.count, 1);
    assert!(
        loaded.skipped.examples[0].contains("line 5"),
        "{:?}",
        loaded.skipped
    );
    assert_eq!(loaded.task, Task::Classification);
    assert_eq!(loaded.classes, ["setosa", "versicolor", "virginica"]);
    assert_eq!(d.input().shape, [2]);
    assert_eq!(d.targets.shape, [1]);
    assert_eq!(ids(&d.targets.values), [2, 0, 1, 0]);
    // Each feature standardised over the rows read: mean 0, deviation 1.
    let x = f32s(&d.input().values);
    for f in 0..2 {
        let col: Vec<f32> = x.iter().skip(f).step_by(2).copied().collect();
        let mean = col.iter().sum::<f32>() / 4.0;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{col:?}");
    }
    assert!(loaded.report.contains("4 rows"), "{}", loaded.report);

    // Unscaled, with a chosen label and features, and targets as values.
    let options = CsvOptions {
        label: Some("a".into()),
        columns: Some(vec!["b".into()]),
        unscaled: true,
        task: Some(Task::Regression),
        ..CsvOptions::default()
    };
    let loaded = Dataset::from_csv(&path, &options).unwrap();
    assert_eq!(
        f32s(&loaded.dataset.input().values),
        [10.0, 20.0, 30.0, 50.0]
    );
    assert_eq!(f32s(&loaded.dataset.targets.values), [1.0, 2.0, 3.0, 5.0]);
    assert!(loaded.classes.is_empty());
}

#[test]
fn the_task_is_inferred_from_the_labels_and_binary_targets_can_be_values() {
    let dir = tempfile::tempdir().unwrap();
    let binary = write(dir.path(), "b.csv", "x,label\n0.5,1\n0.1,0\n0.9,1\n");
    let loaded = Dataset::from_csv(
        &binary,
        &CsvOptions {
            targets: Targets::Values,
            ..CsvOptions::default()
        },
    )
    .unwrap();
    assert_eq!(loaded.task, Task::Classification);
    assert_eq!(f32s(&loaded.dataset.targets.values), [1.0, 0.0, 1.0]);
    let numbers = write(dir.path(), "r.csv", "x,y\n0.5,1.5\n0.1,0.25\n0.9,3\n");
    let loaded = Dataset::from_csv(&numbers, &CsvOptions::default()).unwrap();
    assert_eq!(loaded.task, Task::Regression);
    assert_eq!(f32s(&loaded.dataset.targets.values), [1.5, 0.25, 3.0]);
}

#[test]
fn each_kind_of_error_is_its_own_variant_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    match Dataset::from_csv(dir.path().join("nope.csv"), &CsvOptions::default()) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("nope.csv")),
        other => panic!("{other:?}"),
    }
    let dirty = write(dir.path(), "d.csv", "x,label\n0.5,a\n,b\n0.7,a\n");
    let strict = CsvOptions {
        strict: true,
        ..CsvOptions::default()
    };
    match Dataset::from_csv(&dirty, &strict) {
        Err(Error::Bad { path, message }) => {
            assert_eq!(path, dirty);
            assert!(message.contains("line 3"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let options = CsvOptions {
        label: Some("class".into()),
        ..CsvOptions::default()
    };
    match Dataset::from_csv(&dirty, &options) {
        Err(Error::Mismatch { message }) => assert!(message.contains("class"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_text_table_gives_token_ids_capped_to_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "reviews.csv",
        "text,stars\n\"good good film\",pos\nbad film,neg\n\"good, fine\",pos\n",
    );
    let options = TextCsvOptions {
        ids_per_text: 4,
        vocab: Some(4),
        ..TextCsvOptions::default()
    };
    let loaded = Dataset::from_text_csv(&path, &options).unwrap();
    let d = &loaded.dataset;
    assert_eq!(d.input().shape, [4]);
    assert_eq!(loaded.classes, ["neg", "pos"]);
    // Two words kept (vocab 4: padding, unknown, two): `good` (3 times) and `film` (twice).
    let x = ids(&d.input().values);
    assert_eq!(&x[..4], [2, 2, 3, 0]);
    assert_eq!(&x[4..8], [1, 3, 0, 0]);
    assert_eq!(&x[8..], [2, 1, 0, 0]);
    assert!(x.iter().all(|&i| i < 4));
}

#[test]
fn an_image_folder_gives_values_in_the_shape_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    for (class, shade) in [("dark", 10u8), ("light", 240u8)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..2 {
            let img = image::GrayImage::from_pixel(6, 4, image::Luma([shade]));
            img.save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.path().join("light/broken.png"), b"not a png").unwrap();
    let loaded = Dataset::from_image_folder(dir.path(), &[1, 4, 6]).unwrap();
    assert_eq!(loaded.dataset.len(), 4);
    assert_eq!(loaded.skipped.count, 1);
    assert!(
        loaded.skipped.examples[0].contains("broken.png"),
        "{:?}",
        loaded.skipped
    );
    assert_eq!(loaded.classes, ["dark", "light"]);
    assert_eq!(loaded.dataset.input().shape, [1, 4, 6]);
    let x = f32s(&loaded.dataset.input().values);
    assert!((x[0] - 10.0 / 255.0).abs() < 1e-6 && (x[24 * 3] - 240.0 / 255.0).abs() < 1e-6);
    assert_eq!(ids(&loaded.dataset.targets.values), [0, 0, 1, 1]);
    // Resized to the shape asked for; a shape with 2 channels is refused.
    let small = Dataset::from_image_folder(dir.path(), &[3, 2, 3]).unwrap();
    assert_eq!(small.dataset.input().shape, [3, 2, 3]);
    match Dataset::from_image_folder(dir.path(), &[2, 4, 6]) {
        Err(Error::Mismatch { message }) => assert!(message.contains("channels"), "{message}"),
        other => panic!("{other:?}"),
    }
}
