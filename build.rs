//! Compiles every `bpf/*.bpf.c` into a CO-RE object and generates its libbpf-rs skeleton
//! (`$OUT_DIR/<name>.skel.rs`, included by the capture module). Nothing is compiled on the
//! target machine at run time.

use std::env;
use std::fs;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("no vmlinux.h committed for target arch {other}"),
        Err(_) => panic!("cargo sets CARGO_CFG_TARGET_ARCH"),
    };
    println!("cargo:rerun-if-changed=bpf");
    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("bpf/ exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    for source in sources {
        let file = source.file_name().unwrap().to_string_lossy().into_owned();
        let name = file.trim_end_matches(".bpf.c");
        println!("cargo:rerun-if-changed={}", source.display());
        SkeletonBuilder::new()
            .source(&source)
            .clang_args([
                "-Wall".to_string(),
                "-Ibpf/include".to_string(),
                format!("-Ibpf/include/{arch}"),
                format!("-D__TARGET_ARCH_{arch}"),
            ])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", source.display()));
    }
}
