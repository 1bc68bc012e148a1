//! [`Resources`]: the containers and networks one test made, removed by
//! its owner's Drop.

use super::{VethPair, docker, docker_ok, docker_run, remove_containers, text};

/// The containers and networks one test made, named `<tag>-<what>`, on
/// networks whose IPAM driver is `driver`. The owner (a test's fixture)
/// calls [`Resources::cleanup`] in its Drop, also when the test panics,
/// while the driver still answers.
pub struct Resources {
    pub tag: String,
    pub driver: String,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    /// Parent links of macvlan/ipvlan networks: dropped with the owner,
    /// after its Drop has removed the networks.
    pub links: Vec<VethPair>,
}

impl Resources {
    pub fn new(tag: String, driver: String) -> Resources {
        Resources {
            tag,
            driver,
            containers: Vec::new(),
            networks: Vec::new(),
            links: Vec::new(),
        }
    }

    /// A new veth pair (both ends up) for macvlan/ipvlan parents, deleted
    /// after the networks; `what` (at most 4 characters) names it in this
    /// test. Returns its two ends.
    pub fn veth(&mut self, what: &str) -> [String; 2] {
        let pair = VethPair::new(&format!("{}{what}", std::process::id()));
        let ends = pair.ends.clone();
        self.links.push(pair);
        ends
    }

    /// `<tag>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }

    /// `docker network create --ipam-driver DRIVER EXTRA... NAME`.
    pub fn try_network(&mut self, what: &str, extra: &[&str]) -> Result<String, String> {
        let name = self.name(what);
        self.networks.push(name.clone());
        let mut args = vec!["network", "create", "--ipam-driver", self.driver.as_str()];
        args.extend_from_slice(extra);
        args.push(&name);
        let out = docker(&args);
        if out.status.success() {
            Ok(name)
        } else {
            Err(text(&out.stderr))
        }
    }

    pub fn network(&mut self, what: &str, extra: &[&str]) -> String {
        self.try_network(what, extra)
            .unwrap_or_else(|e| panic!("docker network create {what} {extra:?}: {e}"))
    }

    /// A network create that must fail: returns the CLI's error after
    /// checking that Docker has no such network (nor is there one to
    /// remove afterwards).
    pub fn network_fails(&mut self, what: &str, extra: &[&str]) -> String {
        match self.try_network(what, extra) {
            Ok(n) => panic!("docker network create {extra:?} succeeded ({n}) but should fail"),
            Err(e) => {
                let name = self.name(what);
                assert!(
                    !docker(&["network", "inspect", &name]).status.success(),
                    "failed network {name} exists in Docker"
                );
                self.networks.retain(|n| n != &name);
                e
            }
        }
    }

    pub fn try_run(&mut self, what: &str, net: &str, extra: &[&str]) -> Result<String, String> {
        let name = self.name(what);
        self.containers.push(name.clone());
        docker_run(&name, net, extra).map(|_| name)
    }

    pub fn run(&mut self, what: &str, net: &str, extra: &[&str]) -> String {
        self.try_run(what, net, extra)
            .unwrap_or_else(|e| panic!("docker run {what} on {net} {extra:?}: {e}"))
    }

    /// `docker run … --mac-address MAC` on `net`. The 28.x CLI cannot give
    /// a MAC on a user network to a 20.10 daemon (API 1.41), so there the
    /// container is created through the Engine API.
    pub fn run_with_mac(&mut self, what: &str, net: &str, mac: &str) -> String {
        if super::server_api_version() >= (1, 44) {
            return self.run(what, net, &["--mac-address", mac]);
        }
        let name = self.name(what);
        self.containers.push(name.clone());
        let (status, body) = super::docker_api_post(
            &format!("/containers/create?name={name}"),
            &serde_json::json!({"Image": super::IMAGE, "Cmd": ["sleep", "600"], "MacAddress": mac,
                "HostConfig": {"NetworkMode": net}}),
        );
        assert_eq!(status, 201, "create {name}: {body}");
        super::docker_ok(&["start", &name]);
        name
    }

    /// Removes a container whose `docker run` failed: created, but its
    /// start failed, so it may or may not exist.
    pub fn rm_failed(&mut self, what: &str) {
        let name = self.name(what);
        remove_containers(&[&name]);
        self.containers.retain(|c| c != &name);
    }

    /// `docker rm -f NAMES...`, which must succeed.
    pub fn rm_containers<S: AsRef<str>>(&mut self, names: &[S]) {
        if names.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(AsRef::as_ref));
        docker_ok(&args);
        self.containers
            .retain(|c| !names.iter().any(|n| n.as_ref() == c));
    }

    pub fn rm_network(&mut self, name: &str) {
        docker_ok(&["network", "rm", name]);
        self.networks.retain(|n| n != name);
    }

    /// Removes every container, then every network (newest first); each
    /// removal must succeed.
    pub fn rm_all(&mut self) {
        let containers = self.containers.clone();
        self.rm_containers(&containers);
        for n in self.networks.clone().iter().rev() {
            self.rm_network(n);
        }
    }

    /// What is left: every container, then every network (newest first),
    /// whatever comes of each removal.
    pub fn cleanup(&mut self) {
        remove_containers(&std::mem::take(&mut self.containers));
        for n in std::mem::take(&mut self.networks).iter().rev() {
            let _ = docker(&["network", "rm", n]);
        }
    }
}
