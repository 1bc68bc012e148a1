//! gipam: a Docker IPAM driver that carves per-network blocks out of the
//! routed prefixes an operator owns and keeps every allocation durably.
//!
//! # Layout
//!
//! - [`config`]: settings from flags and environment into a validated [`config::Config`].
//! - [`ipam`]: the pure core — pools, blocks, address sets, the rules that pick them,
//!   and the addresses remembered for containers that left (F6).
//! - [`store`]: the [`store::Store`] trait and the durable local file store
//!   (snapshot + journal formats, the group-commit writer, snapshots).
//! - [`service`]: the glue that plans a change, applies it and commits it.
//! - [`routes`]: the host's routing table, read for the block search.
//! - [`api`]: the Docker plugin protocol over HTTP: wire structs, handlers, server.
//! - [`cli`]: the `gipam` binary as a client of the running plugin
//!   (`gipam pools show|apply`), and the socket discovery it uses.
//! - [`daemon`]: start-up and shutdown: store, allocator, listener, signals.
//! - [`listen`]: binding the socket or TCP + spec file, never over a file
//!   gipam does not own.
//! - [`refusal`]: the one-line reason of a refused start, with its fix.
//! - [`cli`]: the client subcommands (status, leases, reconcile, import).
//! - [`metrics`]: request and store counters, and Prometheus `/metrics`.
//! - [`error`]: the error every request path returns.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod fleet;
pub mod ipam;
pub mod listen;
pub mod metrics;
pub mod refusal;
pub mod routes;
pub mod service;
pub mod store;
