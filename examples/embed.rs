//! A tiny app that embeds ringcast as its realtime edge.
//!
//! - `on_connect` refuses streams without the `X-Demo-Key` header (value from
//!   `DEMO_KEY`, default `demo`), the way an app would check a session;
//! - `on_subscribe` gives every client a topic of its own, `clients/<id>`, and
//!   drops `admin/…` topics for anyone who is not a superuser;
//! - `on_message` stamps each clock tick with the recipient's client id;
//! - a plain tokio task publishes a clock tick to `clock` every second through
//!   the `Broker`, and greets every client on its own topic.
//!
//! Run: `cargo run --example embed -- 127.0.0.1:8090`, then
//! `curl -N -H 'X-Demo-Key: demo' http://127.0.0.1:8090/api/realtime`.

use ringcast::hooks::{Hooks, Reject};
use ringcast::{Broker, Server};
use serde_json::json;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()?;
    let key = std::env::var("DEMO_KEY").unwrap_or_else(|_| "demo".into());

    let hooks = Hooks::new()
        .on_connect(move |e| {
            if e.header("x-demo-key") != Some(key.as_str()) {
                return Err(Reject::new(401, "send the X-Demo-Key header"));
            }
            Ok(())
        })
        .on_subscribe(|e| {
            let superuser = e.auth().is_some_and(|a| a.superuser);
            let own = format!("clients/{}", e.client().id());
            let subs = e.subscriptions_mut();
            subs.retain(|s| superuser || !s.starts_with("admin/"));
            subs.push(own);
            Ok(())
        })
        .on_message(|e| {
            if e.name() == "clock" {
                let stamped = format!(
                    r#"{{"tick":{},"client":"{}"}}"#,
                    String::from_utf8_lossy(e.data()),
                    e.client().id()
                );
                e.set_data(stamped);
            }
        })
        .on_disconnect(|e| tracing::info!(client = e.client().id(), reason = ?e.reason(), "left"));

    let server = Server::builder().http(addr).hooks(hooks).start()?;
    let broker = server.broker();
    std::thread::spawn(move || {
        let clock = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime for the clock");
        clock.block_on(tick(broker));
    });
    println!("embed example listening on http://{}", server.local_addr());
    server.wait();
    Ok(())
}

/// Publishes the time every second and greets newcomers on their own topic.
async fn tick(broker: Broker) {
    let mut greeted: HashSet<String> = HashSet::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        if let Err(e) = broker.publish("clock", &now).await {
            tracing::warn!("clock tick not published: {e}");
            return;
        }
        let Ok(clients) = broker.clients().await else {
            return;
        };
        let live: HashSet<&str> = clients.iter().map(|c| c.id.as_str()).collect();
        greeted.retain(|id| live.contains(id.as_str()));
        for client in clients {
            let topic = format!("clients/{}", client.id);
            // Greet once its first subscription POST has given it its topic.
            if client.subscriptions.contains(&topic) && greeted.insert(client.id.clone()) {
                let _ = broker.publish(&topic, &json!({"hello": client.id})).await;
            }
        }
    }
}
