//! Reading a pool file (pure: bytes in, [`TreeSpec`] out). Two formats, told
//! apart by their top-level keys:
//!
//! - gipam's own: `{"pools": [...]}`, the [`TreeSpec`] JSON, read strictly
//!   (an unknown key is refused, so a typo does not silently do nothing);
//! - python-docker-ipam's `schema.json` (`schema_version` 1 with `scopes`),
//!   read as it is, so its users move over with their file unchanged.
//!
//! How a seed scope becomes a pool: `network` plus `prefix` is the CIDR
//! (a child scope without `prefix` has its parent's `child_prefix`, as in
//! the seed); `child_prefix` is the block size; `tags` and `propagate_tags`
//! (default true, as the seed's constructor has it) carry over; `lock_down`
//! means the scope hands out no blocks of its own, only its children do (the
//! seed refuses to carve a locked scope); `tcp_ip_version`, when given, must
//! agree with the address; `pre_seed_children` is accepted and has no
//! effect (the seed wrote every child into its database up front; gipam
//! finds free blocks without enumerating them). The seed has no names: each
//! pool is named by its CIDR (`pool=100.64.0.0/20`).

use serde::Deserialize;
use serde_json::Value;

use super::tree::{TreePoolSpec, TreeSpec};
use super::{Family, parse_addr};

/// One scope of python-docker-ipam's `schema.json`. Unknown keys are
/// ignored, as the seed ignores them.
#[derive(Debug, Deserialize)]
struct SeedScope {
    network: String,
    #[serde(default)]
    prefix: Option<u8>,
    #[serde(default)]
    child_prefix: Option<u8>,
    #[serde(default)]
    propagate_tags: Option<bool>,
    #[serde(default)]
    lock_down: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    pre_seed_children: Option<bool>,
    #[serde(default)]
    tcp_ip_version: Option<u8>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    scopes: Option<Vec<SeedScope>>,
}

#[derive(Debug, Deserialize)]
struct SeedSchema {
    schema_version: u64,
    #[serde(default)]
    scopes: Vec<SeedScope>,
}

/// Parses a pool file in either format (see the module doc).
pub fn parse_tree_file(bytes: &[u8]) -> Result<TreeSpec, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("pool file is not valid JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("pool file is not a JSON object; see the README for its format".into());
    };
    if obj.contains_key("schema_version") {
        let schema: SeedSchema = serde_json::from_value(value)
            .map_err(|e| format!("schema.json (python-docker-ipam format): {e}"))?;
        return from_seed(schema);
    }
    if obj.contains_key("pools") {
        return serde_json::from_value(value).map_err(|e| format!("pool file: {e}"));
    }
    Err("pool file has neither \"pools\" (gipam's format) nor \"schema_version\" (python-docker-ipam's schema.json); see the README".into())
}

fn from_seed(schema: SeedSchema) -> Result<TreeSpec, String> {
    if schema.schema_version != 1 {
        return Err(format!(
            "schema.json has schema_version {}; gipam reads python-docker-ipam's version 1",
            schema.schema_version
        ));
    }
    let pools = schema
        .scopes
        .iter()
        .map(|s| seed_scope(s, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TreeSpec { pools })
}

fn seed_scope(s: &SeedScope, parent_child_prefix: Option<u8>) -> Result<TreePoolSpec, String> {
    let addr = parse_addr(s.network.trim()).map_err(|why| {
        format!(
            "schema.json: scope network {} is not an IP address: {why}",
            super::quote(&s.network)
        )
    })?;
    let prefix = s.prefix.or(parent_child_prefix).ok_or_else(|| {
        format!(
            "schema.json: scope {addr} has no prefix (a top-level scope needs \"prefix\"; a child takes its parent's child_prefix)"
        )
    })?;
    let family = Family::of(addr);
    match (s.tcp_ip_version, family) {
        (None | Some(4), Family::V4) | (None | Some(6), Family::V6) => {}
        (Some(v), f) => {
            return Err(format!(
                "schema.json: scope {addr} says tcp_ip_version {v} but is an {f} address"
            ));
        }
    }
    if prefix > family.bits() {
        return Err(format!(
            "schema.json: scope {addr} has prefix {prefix}, longer than an {family} address"
        ));
    }
    let cidr = format!("{addr}/{prefix}");
    let children = s
        .scopes
        .iter()
        .flatten()
        .map(|c| seed_scope(c, s.child_prefix))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TreePoolSpec {
        name: cidr.clone(),
        cidr,
        block: s.child_prefix,
        tags: s.tags.clone().unwrap_or_default(),
        propagate: s.propagate_tags.unwrap_or(true),
        lock_down: s.lock_down.unwrap_or(false),
        exclude: Vec::new(),
        reservations: Vec::new(),
        children,
    })
}
