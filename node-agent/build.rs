//! Compiles the eBPF programs in `bpf/*.bpf.c` with clang (`-target bpf -O2 -g`) into
//! `$OUT_DIR`, where `src/ebpf/loader.rs` embeds them. `-g` keeps the BTF that the loader needs
//! for CO-RE relocations and for the maps' key and value types.
//!
//! Needs clang and libbpf's headers (Debian: `apt-get install clang libbpf-dev`); `$CLANG`
//! chooses another compiler.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: [&str; 2] = ["net", "blkio"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    println!("cargo:rerun-if-env-changed=CLANG");
    // `-target bpf` leaves out the multiarch include directory where Debian keeps `asm/`,
    // which `linux/types.h` includes.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    for name in PROGRAMS {
        let src = Path::new("bpf").join(format!("{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg(format!("-I{multiarch}"))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {clang} to compile {}: {e}; install clang and libbpf-dev \
                     (Debian) or set CLANG",
                    src.display()
                )
            });
        assert!(
            status.success(),
            "{clang} failed on {} (are libbpf-dev's headers installed?)",
            src.display()
        );
    }
}
