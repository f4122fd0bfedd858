//! Tier 1, no GPU: every `shaders/*.wgsl` parses and validates with naga, and every file on disk
//! is a known shader family (so none is left out of the build). Each family is compiled after
//! `shaders/common.wgsl`, and validated that way.

use std::path::Path;

use kiln::device::ShaderFamily;

fn validate(name: &str, source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| format!("{name}: {}", e.emit_to_string(source)))?;
    Ok(())
}

#[test]
fn every_shader_family_validates_with_naga() {
    let mut failures = vec![];
    for family in ShaderFamily::ALL {
        if let Err(e) = validate(family.file(), family.source()) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_wgsl_file_is_a_known_family() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let known: Vec<&str> = ShaderFamily::ALL.iter().map(|f| f.file()).collect();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".wgsl") && name != "common.wgsl" {
            seen += 1;
            assert!(
                known.contains(&name.as_str()),
                "{name} is not in ShaderFamily::ALL"
            );
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let compiled = format!("{}{text}", kiln::device::shaders::COMMON);
            validate(&name, &compiled).unwrap();
        }
    }
    assert_eq!(
        seen,
        known.len(),
        "a family's file is missing from shaders/"
    );
}

#[test]
fn a_broken_shader_is_reported_not_accepted() {
    // The validator must catch a type error, or the tests above prove nothing.
    let broken = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    assert!(validate("broken.wgsl", broken).is_err());
}
