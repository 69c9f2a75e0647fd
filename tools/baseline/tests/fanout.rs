//! Many clients: every one of 200 subscribers receives every publish, in order.

use std::thread;

use ringcast_testkit::{
    baseline::{publish, subscribe},
    server::Server,
    sse::SseClient,
};

const CLIENTS: usize = 200;
const MESSAGES: usize = 50;

#[test]
fn two_hundred_clients_lose_nothing() {
    let server = Server::baseline(&[]);
    let mut clients: Vec<SseClient> = (0..CLIENTS)
        .map(|_| SseClient::connect(server.addr))
        .collect();
    for (i, client) in clients.iter().enumerate() {
        // Half also hold an options variant, which doubles their share.
        if i % 2 == 0 {
            subscribe(server.addr, &client.id, &["fan"]);
        } else {
            subscribe(server.addr, &client.id, &["fan", "fan?options=1"]);
        }
    }

    // Readers run concurrently with the publisher so that no socket buffer fills.
    let readers: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(i, mut client)| {
            thread::spawn(move || {
                for n in 0..MESSAGES {
                    let data = format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(100));
                    let event = client.next_event();
                    assert_eq!(
                        (event.name.as_str(), event.data.as_str()),
                        ("fan", data.as_str())
                    );
                    if i % 2 == 1 {
                        let event = client.next_event();
                        assert_eq!(
                            (event.name.as_str(), event.data.as_str()),
                            ("fan?options=1", data.as_str())
                        );
                    }
                }
                client.expect_silence(
                    std::time::Duration::from_millis(200),
                    "after the 50 messages",
                );
            })
        })
        .collect();

    for n in 0..MESSAGES {
        let body = format!(
            r#"{{"topic":"fan","data":{{"n":{n},"pad":"{}"}}}}"#,
            "p".repeat(100)
        );
        assert_eq!(publish(server.addr, &body), CLIENTS + CLIENTS / 2);
    }
    for reader in readers {
        reader
            .join()
            .expect("a client lost or misordered a message");
    }
}
