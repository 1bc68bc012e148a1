//! Tests of the settings: precedence, aliases, defaults, one-line errors.

use super::*;

fn cfg(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let args = std::iter::once("gipam".to_string()).chain(args.iter().map(|s| s.to_string()));
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_sources(args, env)
}

fn invalid(args: &[&str], env: &[(&str, &str)]) -> String {
    match cfg(args, env) {
        Err(ConfigError::Invalid(m)) => m,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = cfg(&[], &[]).expect("defaults are valid");
    assert_eq!(
        c.settings.v4,
        vec!["172.16.0.0/16".parse::<IpNet>().expect("net")]
    );
    assert!(c.settings.v6.is_empty());
    assert_eq!((c.settings.v4ab, c.settings.v6ab), (24, 64));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/gipam"));
    assert_eq!(
        c.listen,
        Listen::Unix("/run/docker/plugins/gipam.sock".into())
    );
}

#[test]
fn flags_override_env_which_overrides_aliases() {
    let c = cfg(&["--v4ab", "26"], &[("V4AB", "25"), ("GIPAM_V4AB", "27")]).expect("valid");
    assert_eq!(c.settings.v4ab, 26);
    let c = cfg(&[], &[("V4AB", "25"), ("GIPAM_V4AB", "27")]).expect("valid");
    assert_eq!(c.settings.v4ab, 25);
    let c = cfg(&[], &[("GIPAM_V4AB", "27"), ("GIPAM_V6", "2001:db8::/48")]).expect("valid");
    assert_eq!(c.settings.v4ab, 27);
    assert_eq!(c.settings.v6.len(), 1);
    let c = cfg(&[], &[("GIPAM_FILE", "/srv/gipam/state.json")]).expect("valid");
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
        assert!(check_log_filter(f).is_ok(), "{f}");
    }
}

#[test]
fn tcp_address_defaults_to_loopback() {
    let c = cfg(&["--address", ":8181"], &[]).expect("valid");
    match c.listen {
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
    assert!(matches!(c.listen, Listen::Tcp { addr, .. } if addr.ip().is_unspecified()));
}

#[test]
fn client_limits_have_defaults_and_take_fractions() {
    let c = cfg(&[], &[]).expect("defaults");
    assert_eq!(c.limits, Limits::default());
    let c = cfg(&["--client-timeout", "0.5", "--max-connections", "8"], &[]).expect("valid");
    assert_eq!(
        c.limits.client_timeout,
        std::time::Duration::from_millis(500)
    );
    assert_eq!(c.limits.max_connections, 8);
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
        (&["--address", "nowhere"], &[], "ADDRESS=nowhere"),
        (&["--bogus"], &[], "--bogus"),
        (&[], &[("COMPACT_BYTES", "10")], "COMPACT_BYTES=10"),
        (&[], &[("LOG", "nonsense=xx=")], "LOG=nonsense=xx="),
        (&[], &[("LOG", "gipam=loud")], "module=level"),
        (
            &["--address", "0.0.0.0:8181"],
            &[],
            "ADDRESS=0.0.0.0:8181 is not a loopback address",
        ),
        (&["--address", "[::]:8181"], &[], "set ALLOW_REMOTE=true"),
        (
            &["--address", "10.0.0.1:8181", "--allow-remote", "maybe"],
            &[],
            "ALLOW_REMOTE=maybe",
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
}

#[test]
fn metrics_address_is_off_by_default_and_port_only_means_loopback() {
    assert_eq!(cfg(&[], &[]).expect("valid").metrics, None);
    let c = cfg(&[], &[("METRICS_ADDRESS", ":9115")]).expect("valid");
    assert_eq!(c.metrics, Some("127.0.0.1:9115".parse().expect("addr")));
    // Read-only: another host may scrape it (the README says what it shows).
    let c = cfg(&["--metrics-address", "0.0.0.0:9115"], &[]).expect("valid");
    assert_eq!(c.metrics, Some("0.0.0.0:9115".parse().expect("addr")));
    let m = invalid(&[], &[("METRICS_ADDRESS", "nowhere")]);
    assert!(
        m.starts_with("METRICS_ADDRESS=nowhere is not host:port"),
        "{m}"
    );
}
