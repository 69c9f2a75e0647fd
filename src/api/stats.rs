//! `GET /api/stats`: every core's counters and their total.

use super::caller::Caller;
use crate::core::CoreStats;
use crate::http::error::ApiError;
use serde_json::json;

pub async fn handle(caller: &Caller<'_>) -> Result<Vec<u8>, ApiError> {
    let cores = caller.broker.stats().await?;
    let total = CoreStats::total(&cores);
    serde_json::to_vec(&json!({"total": total, "cores": cores}))
        .map_err(|e| ApiError::new(500, format!("Could not serialise the stats: {e}.")))
}
