//! The settings table — one entry per setting: its environment name and
//! aliases, flag, default and help — and the command line built from it
//! (`gipam --help` prints it).

use clap::{Arg, ArgAction, Command};

use super::DEFAULT_V4;

/// One setting.
pub(super) struct Setting {
    pub env: &'static str,
    pub aliases: &'static [&'static str],
    pub flag: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub(super) const SETTINGS: &[Setting] = &[
    Setting {
        env: "V4",
        aliases: &["GIPAM_V4"],
        flag: "v4",
        default: DEFAULT_V4,
        help: "main IPv4 pool(s), comma-separated CIDRs, used in the order listed",
    },
    Setting {
        env: "V4AB",
        aliases: &["GIPAM_V4AB"],
        flag: "v4ab",
        default: "24",
        help: "prefix length of the IPv4 block one network gets",
    },
    Setting {
        env: "V6",
        aliases: &["GIPAM_V6"],
        flag: "v6",
        default: "",
        help: "main IPv6 pool(s), used in the order listed; empty: a ULA /48 generated once and kept in the state",
    },
    Setting {
        env: "V6AB",
        aliases: &["GIPAM_V6AB"],
        flag: "v6ab",
        default: "64",
        help: "prefix length of the IPv6 block one network gets",
    },
    Setting {
        env: "STATE_DIR",
        aliases: &[],
        flag: "state-dir",
        default: "/var/lib/gipam",
        help: "directory of the durable state (GIPAM_FILE=path uses the file's directory)",
    },
    Setting {
        env: "SOCKET",
        aliases: &[],
        flag: "socket",
        default: "/run/docker/plugins/gipam.sock",
        help: "unix socket to serve on",
    },
    Setting {
        env: "ADDRESS",
        aliases: &["GIPAM_ADDRESS"],
        flag: "address",
        default: "",
        help: "serve on TCP host:port instead (:port means loopback) and write SPEC_FILE",
    },
    Setting {
        env: "SPEC_FILE",
        aliases: &[],
        flag: "spec-file",
        default: "/etc/docker/plugins/gipam.spec",
        help: "plugin spec file written when ADDRESS is set; an existing one is replaced only if it is a stale one of gipam's",
    },
    Setting {
        env: "ALLOW_REMOTE",
        aliases: &[],
        flag: "allow-remote",
        default: "false",
        help: "allow ADDRESS on a non-loopback address: gipam has no authentication, so every host that reaches it can allocate, release and list addresses",
    },
    Setting {
        env: "MAX_CONNECTIONS",
        aliases: &[],
        flag: "max-connections",
        default: "256",
        help: "most client connections open at once; more are closed as soon as they are accepted",
    },
    Setting {
        env: "CLIENT_TIMEOUT",
        aliases: &[],
        flag: "client-timeout",
        default: "5",
        help: "seconds a client may take to send a request's headers or its body, or to read a reply; also how long an idle connection stays open",
    },
    Setting {
        env: "COMPACT_BYTES",
        aliases: &[],
        flag: "compact-bytes",
        default: "16777216",
        help: "journal size (bytes, at least 4096) past which it is folded into a new snapshot",
    },
    Setting {
        env: "POOLS",
        aliases: &[],
        flag: "pools",
        default: "",
        help: "pool-tree file loaded at every start, replacing the tree in the state (gipam's format or python-docker-ipam's schema.json); `gipam pools apply FILE` changes it at run time",
    },
    Setting {
        env: "METRICS_ADDRESS",
        aliases: &[],
        flag: "metrics-address",
        default: "",
        help: "serve Prometheus /metrics on TCP host:port (:port means loopback); empty: off. Read-only, but it shows pool names and use",
    },
    Setting {
        env: "REQUIRE_MAC",
        aliases: &[],
        flag: "require-mac",
        default: "true",
        help: "ask Docker for every endpoint's MAC address (RequiresMACAddress), so an address can follow a pinned MAC on engines before 29; false on hosts with ipvlan networks, whose driver then refuses every endpoint",
    },
    Setting {
        env: "ETCD_ENDPOINTS",
        aliases: &[],
        flag: "etcd-endpoints",
        default: "",
        help: "comma-separated etcd client URLs (http://host:port or https://…): fleet mode, one address plan shared by every host that names the same etcd and ETCD_PREFIX; empty: this host only",
    },
    Setting {
        env: "ETCD_PREFIX",
        aliases: &[],
        flag: "etcd-prefix",
        default: "/gipam",
        help: "key prefix of this fleet in etcd",
    },
    Setting {
        env: "ETCD_CA",
        aliases: &[],
        flag: "etcd-ca",
        default: "",
        help: "PEM file of the CA that signed etcd's server certificates (https endpoints)",
    },
    Setting {
        env: "ETCD_CERT",
        aliases: &[],
        flag: "etcd-cert",
        default: "",
        help: "PEM client certificate for etcd's --client-cert-auth (with ETCD_KEY)",
    },
    Setting {
        env: "ETCD_KEY",
        aliases: &[],
        flag: "etcd-key",
        default: "",
        help: "PEM private key of ETCD_CERT",
    },
    Setting {
        env: "ETCD_USER",
        aliases: &[],
        flag: "etcd-user",
        default: "",
        help: "etcd user name (with ETCD_PASSWORD_FILE)",
    },
    Setting {
        env: "ETCD_PASSWORD_FILE",
        aliases: &[],
        flag: "etcd-password-file",
        default: "",
        help: "file holding ETCD_USER's password (its first line)",
    },
    Setting {
        env: "ETCD_TIMEOUT",
        aliases: &[],
        flag: "etcd-timeout",
        default: "3",
        help: "seconds a request that needs etcd waits for it before failing with the endpoints and the cause",
    },
    Setting {
        env: "HOST_ID",
        aliases: &[],
        flag: "host-id",
        default: "",
        help: "this host's name in the fleet; empty: /etc/machine-id, else the hostname",
    },
    Setting {
        env: "LOG",
        aliases: &[],
        flag: "log",
        default: "info",
        help: "log filter, env_logger syntax (e.g. debug, gipam=trace)",
    },
];

/// The command line: one flag per setting.
pub(super) fn command() -> Command {
    let mut cmd = Command::new("gipam")
        // The usage line says gipam whatever the file is called (the
        // plugin's is /gipam, the build's target/gipam-static).
        .bin_name("gipam")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Docker IPAM driver: per-network blocks from routed prefixes, kept durably")
        .after_help(
            "Flags override environment variables, which override defaults.\n\n\
             Main pools are used in the order they are listed: a network gets its block from \
             the first pool that has one free, so putting a new pool first moves new networks \
             there.\n\n\
             A value gipam refuses (a bad setting, main pools that no longer contain blocks live \
             networks hold, a state it cannot open) does not stop it: it answers every IPAM \
             request with the reason and how to fix it, which docker network create and docker \
             run show. Only a command line it cannot parse or a place it cannot listen on \
             (SOCKET, ADDRESS, SPEC_FILE, ALLOW_REMOTE) stops it.",
        );
    for s in SETTINGS {
        let mut env = s.env.to_string();
        for a in s.aliases {
            env.push_str(", ");
            env.push_str(a);
        }
        let default = if s.default.is_empty() {
            "none".to_string()
        } else {
            s.default.to_string()
        };
        cmd = cmd.arg(
            Arg::new(s.flag)
                .long(s.flag)
                .value_name(s.env)
                .action(ArgAction::Set)
                .help(format!("{} [env: {env}] [default: {default}]", s.help)),
        );
    }
    cmd
}
