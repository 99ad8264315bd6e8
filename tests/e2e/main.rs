//! End-to-end tests: each starts the real `hearth` binary and acts as a client would.
//! Build the binary first (`cargo build --bin hearth`); `HEARTH_BIN` overrides its path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod architecture;
mod auth;
mod auth_admin;
mod auth_jwt;
mod auth_mail;
mod auth_sessions;
mod batch;
mod documents;
mod durability;
mod export;
mod hooks;
mod indexes;
mod migrations;
mod ops;
mod queries;
mod realtime;
mod rules;
mod schemas;
