//! Marks a build without optimization (`cfg(kiln_unoptimized)`), so that opening a device can
//! say once why training is tens of times slower than it should be.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kiln_unoptimized)");
    println!("cargo::rerun-if-env-changed=OPT_LEVEL");
    if std::env::var("OPT_LEVEL").is_ok_and(|level| level == "0") {
        println!("cargo::rustc-cfg=kiln_unoptimized");
    }
}
