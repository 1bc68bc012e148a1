//! The plain daemon's systemd unit: `make install-systemd` into a
//! temporary prefix installs the binary, the unit (its ExecStart naming
//! that binary) and the defaults file, and `systemd-analyze verify` finds
//! nothing to say about the installed unit. (systemd-analyze comes with
//! Debian's `systemd` package; it verifies without systemd running.)

use std::process::Command;

#[test]
fn the_installed_unit_verifies_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("install-systemd")
        .arg(format!("PREFIX={}", root.join("prefix").display()))
        .arg(format!("UNITDIR={}", root.join("units").display()))
        .arg(format!("DEFAULTS={}", root.join("default/gipam").display()))
        .arg(format!("SYSTEMD_BIN={}", env!("CARGO_BIN_EXE_gipam")))
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make install-systemd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = root.join("units/gipam.service");
    let text = std::fs::read_to_string(&unit).expect("unit installed");
    let exec = format!("ExecStart={}", root.join("prefix/bin/gipam").display());
    assert!(text.lines().any(|l| l == exec), "{text}");
    assert!(root.join("prefix/bin/gipam").exists());
    assert!(root.join("default/gipam").exists());

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs (apt-get install systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");

    // The binary the unit starts is the daemon: its settings parse.
    let help = Command::new(root.join("prefix/bin/gipam"))
        .arg("--help")
        .output()
        .expect("installed gipam runs");
    assert!(help.status.success());
}
