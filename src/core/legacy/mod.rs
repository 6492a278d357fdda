//! Legacy "rules" webhooks (`RuleType`, PascalCase keys): the mapping table
//! and the rewrite of a legacy body into the event payload layout.

pub mod mapping;
pub mod rewrite;

pub use rewrite::{LegacyEvent, rewrite};
