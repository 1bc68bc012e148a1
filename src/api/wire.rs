//! The JSON dockerd sends and expects (moby `ipams/remote/api/api.go`).
//!
//! Keys are Go field names. Decoding is tolerant the way Go's is: missing
//! keys and `null` become defaults, unknown keys are ignored.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `null` decodes as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string map whose values may also be `null` (dropped).
fn string_map<'de, D>(d: D) -> Result<HashMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let m: Option<HashMap<String, Option<String>>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

/// `/IpamDriver.RequestPool` request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestPoolRequest {
    #[serde(rename = "AddressSpace", deserialize_with = "nullable")]
    pub address_space: String,
    #[serde(rename = "Pool", deserialize_with = "nullable")]
    pub pool: String,
    #[serde(rename = "SubPool", deserialize_with = "nullable")]
    pub sub_pool: String,
    #[serde(rename = "Options", deserialize_with = "string_map")]
    pub options: HashMap<String, String>,
    #[serde(rename = "V6", deserialize_with = "nullable")]
    pub v6: bool,
}

/// `/IpamDriver.RequestPool` response.
#[derive(Debug, Serialize)]
pub struct RequestPoolResponse {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Pool")]
    pub pool: String,
    #[serde(rename = "Data")]
    pub data: HashMap<String, String>,
}

/// `/IpamDriver.ReleasePool` request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReleasePoolRequest {
    #[serde(rename = "PoolID", deserialize_with = "nullable")]
    pub pool_id: String,
}

/// `/IpamDriver.RequestAddress` request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestAddressRequest {
    #[serde(rename = "PoolID", deserialize_with = "nullable")]
    pub pool_id: String,
    #[serde(rename = "Address", deserialize_with = "nullable")]
    pub address: String,
    #[serde(rename = "Options", deserialize_with = "string_map")]
    pub options: HashMap<String, String>,
}

/// `/IpamDriver.RequestAddress` response.
#[derive(Debug, Serialize)]
pub struct RequestAddressResponse {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Data")]
    pub data: HashMap<String, String>,
}

/// `/IpamDriver.ReleaseAddress` request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReleaseAddressRequest {
    #[serde(rename = "PoolID", deserialize_with = "nullable")]
    pub pool_id: String,
    #[serde(rename = "Address", deserialize_with = "nullable")]
    pub address: String,
}

/// `/IpamDriver.GetCapabilities` response.
#[derive(Debug, Serialize)]
pub struct CapabilitiesResponse {
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    #[serde(rename = "RequiresRequestReplay")]
    pub requires_request_replay: bool,
}

/// `/IpamDriver.GetDefaultAddressSpaces` response.
#[derive(Debug, Serialize)]
pub struct AddressSpacesResponse {
    #[serde(rename = "LocalDefaultAddressSpace")]
    pub local: &'static str,
    #[serde(rename = "GlobalDefaultAddressSpace")]
    pub global: &'static str,
}

/// `/Plugin.Activate` response.
#[derive(Debug, Serialize)]
pub struct ActivateResponse {
    #[serde(rename = "Implements")]
    pub implements: [&'static str; 1],
}

/// `/Gipam.Status` response. Fields are only ever added (F11: `gipam
/// status --json` and scripts read it).
#[derive(Debug, Serialize)]
pub struct StatusResponse {
    #[serde(rename = "Pools")]
    pub pools: Vec<PoolStatus>,
    #[serde(rename = "Leases")]
    pub leases: usize,
    /// The main pools, V4 and V6.
    #[serde(rename = "Mains")]
    pub mains: MainsStatus,
    #[serde(rename = "Store")]
    pub store: StoreStatus,
    /// This host's part in the fleet; null when not in fleet mode (F9).
    #[serde(rename = "Fleet")]
    pub fleet: Option<FleetStatus>,
}

/// One held pool in `/Gipam.Status`.
#[derive(Debug, Serialize)]
pub struct PoolStatus {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Pool")]
    pub pool: String,
    #[serde(rename = "Auto")]
    pub auto: bool,
    #[serde(rename = "Leases")]
    pub leases: usize,
    /// `IPv4` or `IPv6`.
    #[serde(rename = "Family")]
    pub family: &'static str,
    /// Addresses that can be leased (a JSON number; above 2^53 for IPv6
    /// pools larger than a /75).
    #[serde(rename = "Size")]
    pub size: u128,
    /// The fleet-wide network it belongs to (`shared=NAME`), else null.
    #[serde(rename = "Shared")]
    pub shared: Option<String>,
    /// The owner given with `--ipam-opt id=`, else null.
    #[serde(rename = "Owner")]
    pub owner: Option<String>,
    /// The tree pool it was drawn from (F7), else null.
    #[serde(rename = "TreePool")]
    pub tree_pool: Option<String>,
    /// The tags of its tree pool, its own and inherited (empty without one).
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
}

/// The main pools in `/Gipam.Status` and `/Gipam.Fleet`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MainsStatus {
    #[serde(rename = "V4")]
    pub v4: Vec<String>,
    #[serde(rename = "V6")]
    pub v6: Vec<String>,
}

/// The store in `/Gipam.Status`.
#[derive(Debug, Serialize)]
pub struct StoreStatus {
    #[serde(rename = "JournalBytes")]
    pub journal_bytes: u64,
    #[serde(rename = "SnapshotBytes")]
    pub snapshot_bytes: u64,
    /// Snapshots written since gipam started.
    #[serde(rename = "Snapshots")]
    pub snapshots: u64,
    /// When the last of them was written, Unix seconds; null when none.
    #[serde(rename = "LastSnapshot")]
    pub last_snapshot: Option<f64>,
    /// How long the last journal fdatasync took, seconds; null when none.
    #[serde(rename = "LastFsyncSeconds")]
    pub last_fsync_seconds: Option<f64>,
    /// Failed journal writes and snapshots since gipam started.
    #[serde(rename = "Errors")]
    pub errors: u64,
}

/// The fleet in `/Gipam.Status`: this host, etcd's health and what the
/// etcd calls did since start.
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    #[serde(rename = "Host")]
    pub host: String,
    /// Whether the last etcd call succeeded.
    #[serde(rename = "EtcdOk")]
    pub etcd_ok: bool,
    /// Why the last etcd call failed; null when it did not.
    #[serde(rename = "EtcdError")]
    pub etcd_error: Option<String>,
    #[serde(rename = "Endpoints")]
    pub endpoints: Vec<String>,
    /// The etcd revision this host's view of the fleet is current at.
    #[serde(rename = "Revision")]
    pub revision: i64,
    /// Hosts the fleet knows (alive or not).
    #[serde(rename = "Hosts")]
    pub hosts: usize,
    /// etcd calls made since start.
    #[serde(rename = "RoundTrips")]
    pub round_trips: u64,
    /// How long the last one took, seconds; null when none.
    #[serde(rename = "LastRoundTripSeconds")]
    pub last_round_trip_seconds: Option<f64>,
    /// Claims another host won first.
    #[serde(rename = "Conflicts")]
    pub conflicts: u64,
    #[serde(rename = "Retries")]
    pub retries: u64,
    /// etcd calls that failed or timed out.
    #[serde(rename = "Errors")]
    pub errors: u64,
}

/// `/Gipam.Fleet` response: the fleet as this host sees it (F9, F11).
/// Fields are only ever added; the CLI decodes it too.
#[derive(Debug, Serialize, Deserialize)]
pub struct FleetResponse {
    /// This host.
    #[serde(rename = "Host")]
    pub host: String,
    /// The etcd revision the view is current at.
    #[serde(rename = "Revision")]
    pub revision: i64,
    #[serde(rename = "EtcdOk")]
    pub etcd_ok: bool,
    #[serde(rename = "EtcdError")]
    pub etcd_error: Option<String>,
    #[serde(rename = "Endpoints")]
    pub endpoints: Vec<String>,
    /// Every host the fleet knows, by name.
    #[serde(rename = "Hosts")]
    pub hosts: Vec<FleetHost>,
    /// Every shared network, by name.
    #[serde(rename = "Shared")]
    pub shared: Vec<FleetShared>,
    /// The main pools the fleet runs with; null before the first host set them.
    #[serde(rename = "Mains")]
    pub mains: Option<MainsStatus>,
}

/// One host in `/Gipam.Fleet`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FleetHost {
    #[serde(rename = "Host")]
    pub host: String,
    /// Its gipam runs (keeps its heartbeat lease in etcd).
    #[serde(rename = "Alive")]
    pub alive: bool,
    /// Its last heartbeat, Unix seconds; null when it never wrote one.
    #[serde(rename = "LastSeen")]
    pub last_seen: Option<u64>,
    /// The blocks it holds (not shared networks).
    #[serde(rename = "Blocks")]
    pub blocks: Vec<String>,
    /// The shared networks it holds.
    #[serde(rename = "Shared")]
    pub shared: Vec<String>,
    /// Addresses it holds in shared networks.
    #[serde(rename = "SharedAddresses")]
    pub shared_addresses: usize,
}

/// One shared network in `/Gipam.Fleet`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FleetShared {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Subnet")]
    pub subnet: String,
    #[serde(rename = "Gateway")]
    pub gateway: Option<String>,
    /// Hosts holding it; it goes when the last one releases it.
    #[serde(rename = "Holders")]
    pub holders: Vec<String>,
}

/// `/Gipam.FleetForget` request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FleetForgetRequest {
    #[serde(rename = "Host", deserialize_with = "nullable")]
    pub host: String,
}

/// `/Gipam.FleetForget` response: what was released.
#[derive(Debug, Serialize, Deserialize)]
pub struct FleetForgetResponse {
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Blocks")]
    pub blocks: Vec<String>,
    /// Shared networks it no longer holds (gone when it was the last).
    #[serde(rename = "SharedLeft")]
    pub shared_left: Vec<String>,
    #[serde(rename = "SharedAddresses")]
    pub shared_addresses: usize,
}

/// `/Gipam.Leases` response.
#[derive(Debug, Serialize)]
pub struct LeasesResponse {
    #[serde(rename = "Leases")]
    pub leases: Vec<LeaseStatus>,
}

/// One lease in `/Gipam.Leases`.
#[derive(Debug, Serialize)]
pub struct LeaseStatus {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Gateway")]
    pub gateway: bool,
    #[serde(rename = "MacAddress")]
    pub mac_address: Option<String>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
}

/// `/Gipam.Remembered` response: the addresses remembered for containers
/// that left (F6), of held pools and of released ones. Fields are only
/// ever added.
#[derive(Debug, Serialize)]
pub struct RememberedResponse {
    #[serde(rename = "Remembered")]
    pub remembered: Vec<RememberedStatus>,
}

/// One remembered address in `/Gipam.Remembered`: whose it was (a name or
/// a MAC) and when, in the pool's clock (its count of remembered
/// releases: `PoolReleases - Released` releases ago).
#[derive(Debug, Serialize)]
pub struct RememberedStatus {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// False: the pool was released (its network removed); the memory waits
    /// for a pool with its id.
    #[serde(rename = "PoolHeld")]
    pub pool_held: bool,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "MacAddress")]
    pub mac_address: Option<String>,
    #[serde(rename = "Released")]
    pub released: u64,
    #[serde(rename = "PoolReleases")]
    pub pool_releases: u64,
}

/// An empty reply (`{}`): releases must answer valid JSON.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// The error body dockerd understands on a non-200 reply.
#[derive(Debug, Serialize)]
pub struct ErrorResponse {
    #[serde(rename = "Err")]
    pub err: String,
}

/// `/Gipam.Pools` response, and `/Gipam.ApplyPools` (which adds
/// `Changed`): the pool tree in tree order (F7). The CLI decodes it too.
#[derive(Debug, Serialize, Deserialize)]
pub struct PoolsResponse {
    #[serde(rename = "Changed", default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    #[serde(rename = "Pools")]
    pub pools: Vec<TreePoolStatus>,
}

/// One pool of the tree.
#[derive(Debug, Serialize, Deserialize)]
pub struct TreePoolStatus {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Cidr")]
    pub cidr: String,
    #[serde(rename = "Block")]
    pub block: u8,
    #[serde(rename = "Parent")]
    pub parent: Option<String>,
    #[serde(rename = "Depth")]
    pub depth: usize,
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    #[serde(rename = "InheritedTags")]
    pub inherited_tags: Vec<String>,
    #[serde(rename = "Propagate")]
    pub propagate: bool,
    #[serde(rename = "LockDown")]
    pub lock_down: bool,
    #[serde(rename = "Exclude")]
    pub exclude: Vec<String>,
    #[serde(rename = "Reservations")]
    pub reservations: Vec<ReservationStatus>,
    #[serde(rename = "Networks")]
    pub networks: Vec<TreeNetworkStatus>,
}

/// One reservation of a tree pool.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReservationStatus {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "MacAddress")]
    pub mac_address: Option<String>,
    /// Its container holds it now.
    #[serde(rename = "Leased")]
    pub leased: bool,
}

/// One network drawn from a tree pool.
#[derive(Debug, Serialize, Deserialize)]
pub struct TreeNetworkStatus {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The `--ipam-opt id=` it was created with.
    #[serde(rename = "Id")]
    pub id: Option<String>,
    #[serde(rename = "Leases")]
    pub leases: usize,
}
