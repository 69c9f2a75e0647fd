//! `GET /api/stats`: every core's counters and their total.

use super::caller::Caller;
use crate::core::CoreStats;
use crate::http::error::ApiError;
use serde_json::json;

pub async fn handle(caller: &Caller<'_>) -> Result<Vec<u8>, ApiError> {
    let cores = caller.broker.stats().await?;
    let total = CoreStats::total(&cores);
    let mut answer = json!({"total": total, "cores": cores});
    if let Some(cluster) = caller.broker.cluster() {
        // The other nodes as their heartbeats say (nothing while Redis is away).
        let nodes = cluster.nodes().await.unwrap_or_default();
        let sum = |f: fn(&crate::cluster::NodeInfo) -> u64| nodes.iter().map(f).sum::<u64>();
        answer["cluster"] = json!({
            "link": cluster.status(),
            "total": {
                "nodes": nodes.len(),
                "connections": sum(|n| n.connections),
                "clients": sum(|n| n.clients),
                "subscriptions": sum(|n| n.subscriptions),
            },
            "nodes": nodes,
        });
    }
    serde_json::to_vec(&answer)
        .map_err(|e| ApiError::new(500, format!("Could not serialise the stats: {e}.")))
}
