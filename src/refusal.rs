//! Why gipam refuses to serve, as the one line every refused request
//! answers with, saying how to fix it — with the exact command where there
//! is one.
//!
//! The fix of a managed plugin is a `docker plugin set`, which needs the
//! plugin's name, and Docker gives a plugin nothing but the env entries of
//! its config.json (and PATH, HOME): the name is nowhere inside. Its id is:
//! Docker bind-mounts the host's `/run/docker/plugins/<id>` onto the
//! plugin's socket directory, and `/proc/self/mountinfo` shows that source.
//! Docker takes an id prefix wherever it takes a plugin name (`docker
//! plugin disable|set|enable <id>`, checked on 20.10 and 28.5), so the fix
//! names the plugin by the first 12 hex digits of its id, as `docker plugin
//! ls` shows them. Run standalone (no such mount), the fix names the flag
//! or variable the value was given with.

use std::path::Path;

use crate::config::{Given, Listen, Refused};
use crate::ipam::{Family, Stranded, Strands};

/// How gipam was started: what a fix command looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// A Docker managed plugin, by its short id.
    Plugin { id: String },
    /// A process of its own (`make run`, a systemd unit).
    Standalone,
}

impl Deployment {
    /// Finds out from the mount on the socket's directory.
    pub fn detect(listen: &Listen) -> Deployment {
        let Listen::Unix(socket) = listen else {
            return Deployment::Standalone;
        };
        let id = socket.parent().and_then(|dir| {
            let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            plugin_id(&info, dir)
        });
        match id {
            Some(id) => Deployment::Plugin { id },
            None => Deployment::Standalone,
        }
    }

    /// `KEY=VALUE` as it goes on a `docker plugin set` line, or as it is
    /// given to a standalone gipam (`--v4 X`, `V4=X`).
    fn assign(&self, given: &Given, value: &str) -> String {
        match self {
            // A plugin's flags are its `args` setting.
            Deployment::Plugin { .. } if given.is_flag() => {
                format!("args=\"{}\"", given.with(value))
            }
            _ => given.with(value),
        }
    }

    /// The steps that apply `assignments`.
    fn apply(&self, assignments: &[String]) -> String {
        let set = assignments.join(" ");
        match self {
            Deployment::Plugin { id } => format!(
                "docker plugin disable -f {id}; docker plugin set {id} {set}; docker plugin enable {id}"
            ),
            Deployment::Standalone => format!("start gipam again with {set}"),
        }
    }
}

/// The short id of the managed plugin whose socket directory is `dir`:
/// the 64-hex last component of the source of the mount on `dir`.
fn plugin_id(mountinfo: &str, dir: &Path) -> Option<String> {
    let dir = dir.to_str()?;
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options ...
            let mut fields = line.split(' ');
            let root = fields.nth(3)?;
            (fields.next()? == dir).then_some(root)
        })
        // A later mount on the same directory hides the earlier ones.
        .next_back()
        .and_then(|root| root.rsplit('/').next())
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| id[..12].to_string())
}

/// The settings gipam refuses, and how to fix them.
pub fn settings(refused: &Refused, at: &Deployment) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut assignments: Vec<String> = Vec::new();
    for (given, _) in &refused.0 {
        let assignment = at.assign(given, "<value>");
        if !assignments.contains(&assignment) {
            names.push(given.name());
            assignments.push(assignment);
        }
    }
    let fix = match at {
        Deployment::Plugin { .. } => format!("fix it with: {}", at.apply(&assignments)),
        Deployment::Standalone => format!(
            "fix {} and start gipam again (gipam --help lists every setting)",
            names.join(", ")
        ),
    };
    format!(
        "gipam refused its settings at start: {}; {fix}",
        refused.reasons()
    )
}

/// Main pools that strand live networks, with both ways out: keeping the
/// old pools after the new ones, or removing those networks first.
pub fn stranded(strands: &Strands, v4: &Given, v6: &Given, at: &Deployment) -> String {
    let given = |s: &Stranded| match s.family {
        Family::V4 => v4,
        Family::V6 => v6,
    };
    let what: Vec<String> = strands
        .0
        .iter()
        .map(|s| s.describe(&|value| given(s).with(value)))
        .collect();
    let each = |value: &dyn Fn(&Stranded) -> Option<String>| -> Option<Vec<String>> {
        strands
            .0
            .iter()
            .map(|s| value(s).map(|v| at.assign(given(s), &v)))
            .collect()
    };
    let keep = each(&|s| Some(Stranded::value(&s.keeping()))).unwrap_or_default();
    let now = each(&|s| Some(Stranded::value(&s.now))).unwrap_or_default();
    let remove = match each(&|s| s.old_value()) {
        Some(back) => format!(
            "put the old pools back ({}), docker network rm them, then set the new pools again ({})",
            at.apply(&back),
            at.apply(&now)
        ),
        None => "put main pools that hold them back, docker network rm them, then set the new pools again".to_string(),
    };
    format!(
        "gipam refused its main pools at start: {}. To keep those networks, with new networks taken from the new pools first: {}. Or remove those networks: {remove}",
        what.join("; "),
        at.apply(&keep)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "b8a513461a02ae5a6fd4914d244bb6a299a13c31f682c6154a176185131fbff3";

    #[test]
    fn the_plugin_id_comes_from_the_mount_on_the_socket_directory() {
        // As a 28.5 plugin's /proc/self/mountinfo shows it (/run on the
        // root file system), and with /run a tmpfs (the root is relative
        // to it).
        let info = format!(
            "71 46 254:0 /var/lib/docker/plugins/{ID}/rootfs / rw,relatime - ext4 /dev/vda rw\n\
             88 71 254:0 /var/lib/docker/plugins/{ID}/propagated-mount /data rw,relatime shared:1 - ext4 /dev/vda rw\n\
             89 71 254:0 /run/docker/plugins/{ID} /run/docker/plugins rw,relatime shared:3 - ext4 /dev/vda rw\n"
        );
        let dir = Path::new("/run/docker/plugins");
        assert_eq!(plugin_id(&info, dir).as_deref(), Some(&ID[..12]));
        let tmpfs =
            format!("30 22 0:25 /docker/plugins/{ID} /run/docker/plugins rw - tmpfs tmpfs rw\n");
        assert_eq!(plugin_id(&tmpfs, dir).as_deref(), Some(&ID[..12]));
        // Standalone: the directory is no mount, or not Docker's.
        assert_eq!(plugin_id(&info, Path::new("/tmp/x")), None);
        let other = "30 22 0:25 /srv/sockets /run/docker/plugins rw - tmpfs tmpfs rw\n";
        assert_eq!(plugin_id(other, dir), None);
    }
}
