//! Tests of the settings: precedence, aliases, defaults, one-line errors
//! that name the setting as it was given, and where refusing ends and
//! exiting begins.

use super::*;

fn cfg(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    cfg_as("gipam", args, env)
}

/// With `bin` as the program name (`args[0]`).
fn cfg_as(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let args = std::iter::once(bin.to_string()).chain(args.iter().map(|s| s.to_string()));
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_sources(args, env)
}

/// The serving settings of a config that is not refused.
fn core(args: &[&str], env: &[(&str, &str)]) -> Core {
    match cfg(args, env) {
        Ok(Config { core: Ok(core), .. }) => core,
        other => panic!("{args:?} {env:?}: expected valid settings, got {other:?}"),
    }
}

/// Why the settings stop gipam or are refused, whichever it is.
fn invalid(args: &[&str], env: &[(&str, &str)]) -> String {
    match cfg(args, env) {
        Err(ConfigError::Invalid(m)) => m,
        Ok(Config {
            core: Err(refused), ..
        }) => refused.reasons(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = cfg(&[], &[]).expect("defaults are valid");
    assert_eq!(
        c.serve.listen,
        Listen::Unix("/run/docker/plugins/gipam.sock".into())
    );
    let c = c.core.expect("defaults are not refused");
    assert_eq!(
        c.settings.v4,
        vec!["172.16.0.0/16".parse::<IpNet>().expect("net")]
    );
    assert!(c.settings.v6.is_empty());
    assert_eq!((c.settings.v4ab, c.settings.v6ab), (24, 64));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/gipam"));
}

#[test]
fn flags_override_env_which_overrides_aliases() {
    let c = core(&["--v4ab", "26"], &[("V4AB", "25"), ("GIPAM_V4AB", "27")]);
    assert_eq!(c.settings.v4ab, 26);
    let c = core(&[], &[("V4AB", "25"), ("GIPAM_V4AB", "27")]);
    assert_eq!(c.settings.v4ab, 25);
    let c = core(&[], &[("GIPAM_V4AB", "27"), ("GIPAM_V6", "2001:db8::/48")]);
    assert_eq!(c.settings.v4ab, 27);
    assert_eq!(c.settings.v6.len(), 1);
    let c = core(&[], &[("GIPAM_FILE", "/srv/gipam/state.json")]);
    assert_eq!(c.state_dir, PathBuf::from("/srv/gipam"));
}

#[test]
fn log_filters_env_logger_accepts_pass() {
    for f in [
        "info",
        "DEBUG",
        "gipam=debug,warp=warn",
        "gipam::store=trace",
        "warn/regex",
        "gipam",
    ] {
        let given = Given {
            origin: Origin::Env("LOG".into()),
            text: f.into(),
        };
        assert!(check_log_filter(&given).is_ok(), "{f}");
    }
}

#[test]
fn tcp_address_defaults_to_loopback() {
    let c = cfg(&["--address", ":8181"], &[]).expect("valid");
    match c.serve.listen {
        Listen::Tcp { addr, spec_file } => {
            assert_eq!(addr.to_string(), "127.0.0.1:8181");
            assert_eq!(spec_file, PathBuf::from("/etc/docker/plugins/gipam.spec"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn remote_tcp_needs_allow_remote() {
    for a in ["127.0.0.1:8181", "[::1]:8181", "127.3.0.1:1"] {
        assert!(cfg(&["--address", a], &[]).is_ok(), "{a}");
    }
    let c = cfg(&["--address", "0.0.0.0:8181"], &[("ALLOW_REMOTE", "true")]).expect("allowed");
    assert!(matches!(c.serve.listen, Listen::Tcp { addr, .. } if addr.ip().is_unspecified()));
}

#[test]
fn client_limits_have_defaults_and_take_fractions() {
    let c = cfg(&[], &[]).expect("defaults");
    assert_eq!(c.serve.limits, Limits::default());
    let c = cfg(&["--client-timeout", "0.5", "--max-connections", "8"], &[]).expect("valid");
    assert_eq!(
        c.serve.limits.client_timeout,
        std::time::Duration::from_millis(500)
    );
    assert_eq!(c.serve.limits.max_connections, 8);
}

#[test]
fn bad_settings_name_the_setting() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &[],
            &[("V4", "10.40.0.1/16")],
            "host bits set; use 10.40.0.0/16",
        ),
        (&[], &[("V4", "nonsense")], "V4=nonsense"),
        (&[], &[("V4", "2001:db8::/48")], "not an IPv4 prefix"),
        (&[], &[("V4", "10.0.0.0/8,10.1.0.0/16")], "overlaps"),
        (&[], &[("V4AB", "33")], "V4AB=33"),
        (
            &[],
            &[("V4", "10.0.0.0/24"), ("V4AB", "16")],
            "larger than every main IPv4 pool",
        ),
        (&[], &[("V6AB", "40")], "V6AB=40"),
        (
            &["--address", "nowhere"],
            &[],
            "--address nowhere is not host:port",
        ),
        (
            &[],
            &[("ADDRESS", "nowhere")],
            "ADDRESS=nowhere is not host:port",
        ),
        (&["--bogus"], &[], "--bogus"),
        (&[], &[("COMPACT_BYTES", "10")], "COMPACT_BYTES=10"),
        (&[], &[("LOG", "nonsense=xx=")], "LOG=nonsense=xx="),
        (&[], &[("LOG", "gipam=loud")], "module=level"),
        (
            &["--address", "0.0.0.0:8181"],
            &[],
            "--address 0.0.0.0:8181 is not a loopback address",
        ),
        (&["--address", "[::]:8181"], &[], "set --allow-remote true"),
        (&[], &[("ADDRESS", "[::]:8181")], "set ALLOW_REMOTE=true"),
        (
            &["--address", "10.0.0.1:8181", "--allow-remote", "maybe"],
            &[],
            "--allow-remote maybe is not true or false",
        ),
        (&[], &[("MAX_CONNECTIONS", "0")], "MAX_CONNECTIONS=0"),
        (&[], &[("CLIENT_TIMEOUT", "-1")], "CLIENT_TIMEOUT=-1"),
        (&[], &[("CLIENT_TIMEOUT", "NaN")], "CLIENT_TIMEOUT=NaN"),
    ];
    for (args, env, want) in cases {
        let m = invalid(args, env);
        assert!(m.contains(want), "{args:?} {env:?}: {m}");
        assert!(!m.contains('\n'), "one line: {m}");
    }
}

#[test]
fn errors_name_the_flag_or_the_variable_the_value_was_given_as() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--v4ab", "40"],
            &[],
            "--v4ab 40 is not a prefix length from 1 to 32",
        ),
        (
            &[],
            &[("V4AB", "40")],
            "V4AB=40 is not a prefix length from 1 to 32",
        ),
        (
            &[],
            &[("GIPAM_V4AB", "40")],
            "GIPAM_V4AB=40 is not a prefix length",
        ),
        (
            &["--v4", "10.0.0.1/8"],
            &[],
            "--v4 10.0.0.1/8: 10.0.0.1/8 has host bits set",
        ),
        (
            &[],
            &[("GIPAM_V6", "nope")],
            "GIPAM_V6=nope: \"nope\" is not a CIDR",
        ),
        (
            &["--v4", "10.0.0.0/24", "--v4ab", "16"],
            &[],
            "--v4ab 16 is larger than every main IPv4 pool",
        ),
        (
            &["--log", "gipam=loud"],
            &[],
            "--log gipam=loud: \"gipam=loud\"",
        ),
        (
            &["--compact-bytes", "1"],
            &[],
            "--compact-bytes 1 is not a number",
        ),
        (
            &["--max-connections", "0"],
            &[],
            "--max-connections 0 is not",
        ),
        (&["--client-timeout", "x"], &[], "--client-timeout x is not"),
        (&["--state-dir", ""], &[], "--state-dir is empty"),
        (&[], &[("STATE_DIR", "")], "STATE_DIR is empty"),
        (&["--socket", ""], &[], "--socket is empty"),
    ];
    for (args, env, want) in cases {
        let m = invalid(args, env);
        assert!(m.starts_with(want), "{args:?} {env:?}: {m}");
        if !args.is_empty() {
            let upper = args[0]
                .trim_start_matches("--")
                .to_uppercase()
                .replace('-', "_");
            assert!(
                !m.contains(&format!("{upper}=")),
                "names the flag, not {upper}: {m}"
            );
        }
    }
}

#[test]
fn only_a_bad_command_line_or_listen_setting_stops_gipam() {
    // These cannot be answered: there is no place to listen, or no
    // command line to read settings from.
    for (args, env) in [
        (&["--bogus"][..], &[][..]),
        (&["--v4ab"][..], &[][..]),
        (&[][..], &[("SOCKET", "")][..]),
        (&[][..], &[("ADDRESS", "nowhere")][..]),
        (&[][..], &[("ADDRESS", "0.0.0.0:1")][..]),
        (&["--address", ":1", "--spec-file", ""][..], &[][..]),
    ] {
        assert!(
            matches!(cfg(args, env), Err(ConfigError::Invalid(_))),
            "{args:?} {env:?} stops gipam"
        );
    }
    // Everything else is refused while listening where it was told.
    let c = cfg(
        &["--socket", "/tmp/g.sock", "--v4ab", "40"],
        &[
            ("LOG", "gipam=loud"),
            ("MAX_CONNECTIONS", "0"),
            ("V6AB", "x"),
        ],
    )
    .expect("a refused config still has a place to listen");
    assert_eq!(c.serve.listen, Listen::Unix("/tmp/g.sock".into()));
    assert_eq!(c.serve.log, "info", "a refused LOG logs at the default");
    assert_eq!(c.serve.limits, Limits::default());
    let Err(refused) = c.core else {
        panic!("refused")
    };
    let names: Vec<String> = refused.0.iter().map(|(g, _)| g.name()).collect();
    assert_eq!(names, ["MAX_CONNECTIONS", "LOG", "--v4ab", "V6AB"]);
    let line = refused.reasons();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.contains("--v4ab 40 is not") && line.contains("V6AB=x is not"),
        "{line}"
    );
}

#[test]
fn the_usage_line_says_gipam_whatever_the_file_is_called() {
    for bin in ["/gipam", "target/gipam-static", "./target/release/gipam"] {
        let ConfigError::Info(help) = cfg_as(bin, &["--help"], &[]).expect_err("help") else {
            panic!("help is info");
        };
        assert!(help.contains("Usage: gipam [OPTIONS]"), "{bin}: {help}");
        assert!(!help.contains("gipam-static"), "{bin}: {help}");
        let Err(ConfigError::Invalid(line)) = cfg_as(bin, &["--bogus"], &[]) else {
            panic!("--bogus stops gipam");
        };
        assert!(
            line.contains("'--bogus'") && line.contains("gipam --help"),
            "{line}"
        );
    }
}

#[test]
fn help_lists_every_setting_with_env_and_default() {
    let ConfigError::Info(help) = cfg(&["--help"], &[]).expect_err("help") else {
        panic!("help is info");
    };
    for s in SETTINGS {
        assert!(help.contains(&format!("--{}", s.flag)), "{}", s.flag);
        assert!(help.contains(s.env), "{}", s.env);
    }
    assert!(help.contains("GIPAM_V4"));
    assert!(help.contains("172.16.0.0/16"));
    assert!(help.contains("used in the order listed"), "{help}");
    assert!(
        help.contains("putting a new pool first moves new networks"),
        "{help}"
    );
}

#[test]
fn metrics_address_is_off_by_default_and_port_only_means_loopback() {
    assert_eq!(cfg(&[], &[]).expect("valid").serve.metrics, None);
    let c = cfg(&[], &[("METRICS_ADDRESS", ":9115")]).expect("valid");
    assert_eq!(
        c.serve.metrics,
        Some("127.0.0.1:9115".parse().expect("addr"))
    );
    // Read-only: another host may scrape it (the README says what it shows).
    let c = cfg(&["--metrics-address", "0.0.0.0:9115"], &[]).expect("valid");
    assert_eq!(c.serve.metrics, Some("0.0.0.0:9115".parse().expect("addr")));
    let m = invalid(&[], &[("METRICS_ADDRESS", "nowhere")]);
    assert!(
        m.starts_with("METRICS_ADDRESS=nowhere is not host:port"),
        "{m}"
    );
}

#[test]
fn require_mac_is_on_by_default_and_a_bad_value_is_refused() {
    assert!(core(&[], &[]).requires_mac);
    assert!(!core(&[], &[("REQUIRE_MAC", "false")]).requires_mac);
    assert!(!core(&["--require-mac", "false"], &[]).requires_mac);
    let m = invalid(&[], &[("REQUIRE_MAC", "maybe")]);
    assert!(m.starts_with("REQUIRE_MAC=maybe"), "{m}");
}
