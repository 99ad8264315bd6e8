//! Hearth: a self-hosted, Firebase-style backend. This crate is the server: configuration,
//! storage, documents and queries, built-in user auth, the HTTP API and operations endpoints.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod docs;
pub mod error;
pub mod export;
pub mod hooks;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod realtime;
pub mod roles;
pub mod rules_file;
pub mod startup;
pub mod store;
pub mod tools;
