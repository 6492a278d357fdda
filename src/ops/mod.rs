//! What operators see: metrics, liveness and readiness, the HTTP endpoint.
//! Nothing here imports the Kafka shell; the loop reports into these.

pub mod events;
pub mod health;
pub mod http;
pub mod labels;
pub mod metrics;
