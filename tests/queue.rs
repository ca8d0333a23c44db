//! The queue transport's behaviour, checked once and run against both backends: Azure Storage
//! (a real Azurite, started by the harness) and the in-memory queue of `maxconf dev`.

mod common;

use common::azurite::{azurite, unique_queue_name};
use maxconf::pool::{Queue, QueueError, Received, StorageConnection};
use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(60);
/// Generous: Azurite on a loaded CI machine can be slow, and visibility has 1 s granularity.
const DEADLINE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

async fn azure_queue(test: &str) -> Queue {
    let conn = azurite().storage_connection();
    let q = Queue::azure(&conn, &unique_queue_name(test), Duration::from_secs(10)).unwrap();
    q.create_if_missing().await.unwrap();
    q
}

async fn memory_queue(test: &str) -> Queue {
    Queue::memory(&unique_queue_name(test))
}

/// Defines one test per backend for each check: `<check>::azure` and `<check>::memory`.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[tokio::test]
            async fn azure() {
                super::$check(super::azure_queue(stringify!($check)).await).await;
            }
            #[tokio::test]
            async fn memory() {
                super::$check(super::memory_queue(stringify!($check)).await).await;
            }
        }
    )*};
}

on_both_backends!(
    round_trip,
    initial_invisibility_is_respected,
    lease_hides_from_a_second_receiver,
    lease_expiry_returns_the_message,
    stale_pop_receipt_is_not_found,
    release_makes_visible_again,
    release_with_delay,
    approximate_count_includes_invisible,
    clear_removes_everything,
    ttl_is_never_expires,
    create_if_missing_is_idempotent,
    peek_does_not_lease,
    batch_receive,
    concurrent_receivers_never_share_a_message,
);

/// Polls `receive` until it returns something or the deadline passes.
async fn receive_within(q: &Queue, max: u32, lease: Duration, within: Duration) -> Vec<Received> {
    poll_until(within, || async {
        let got = q.receive(max, lease).await.unwrap();
        (!got.is_empty()).then_some(got)
    })
    .await
    .unwrap_or_default()
}

async fn poll_until<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn round_trip(q: Queue) {
    // Any text goes through as-is (the pool base64-encodes its own messages).
    let text = "eyJ2IjoxLCJuYW1lIjoicm9vbS0xIn0=";
    q.send(text, Duration::ZERO).await.unwrap();
    let got = receive_within(&q, 1, LEASE, DEADLINE).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.text, text);
    assert_eq!(m.dequeue_count, 1);
    assert!(!m.id.is_empty() && !m.pop_receipt.is_empty());
    let inserted = m.inserted_at.expect("inserted_at");
    let age = time::OffsetDateTime::now_utc() - inserted;
    assert!(age.whole_seconds().abs() < 120, "inserted_at {inserted}");
    q.delete(m).await.unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), 0);
    assert!(q.receive(1, LEASE).await.unwrap().is_empty());
}

async fn initial_invisibility_is_respected(q: Queue) {
    let sent = Instant::now();
    q.send("warming-up", Duration::from_secs(2)).await.unwrap();
    assert!(q.receive(1, LEASE).await.unwrap().is_empty());
    assert!(q.peek(32).await.unwrap().is_empty());
    assert_eq!(q.approximate_count().await.unwrap(), 1);
    let got = receive_within(&q, 1, LEASE, DEADLINE).await;
    assert_eq!(got.len(), 1, "never became visible");
    assert_eq!(got[0].text, "warming-up");
    // Service time has 1 s granularity: visible no earlier than about 1 s after the send.
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "visible after {:?}",
        sent.elapsed()
    );
}

async fn lease_hides_from_a_second_receiver(q: Queue) {
    q.send("only-one", Duration::ZERO).await.unwrap();
    let first = receive_within(&q, 1, LEASE, DEADLINE).await;
    assert_eq!(first.len(), 1);
    // A second receiver (a clone shares the queue) sees nothing while the lease holds.
    let other = q.clone();
    assert!(other.receive(32, LEASE).await.unwrap().is_empty());
    assert!(other.peek(32).await.unwrap().is_empty());
    assert_eq!(other.approximate_count().await.unwrap(), 1);
    q.delete(&first[0]).await.unwrap();
}

async fn lease_expiry_returns_the_message(q: Queue) {
    q.send("comes-back", Duration::ZERO).await.unwrap();
    let first = receive_within(&q, 1, Duration::from_secs(1), DEADLINE).await;
    assert_eq!(first.len(), 1);
    let again = receive_within(&q, 1, LEASE, DEADLINE).await;
    assert_eq!(again.len(), 1, "lease never expired");
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].dequeue_count, 2);
    assert_ne!(again[0].pop_receipt, first[0].pop_receipt);
    // The first receiver's receipt died when the message was received again.
    assert_eq!(q.delete(&first[0]).await, Err(QueueError::NotFound));
    q.delete(&again[0]).await.unwrap();
}

async fn stale_pop_receipt_is_not_found(q: Queue) {
    q.send("stale", Duration::ZERO).await.unwrap();
    let m = receive_within(&q, 1, LEASE, DEADLINE).await.remove(0);
    // Releasing changes the receipt: the one we hold is now stale.
    q.release(&m, Duration::from_secs(30)).await.unwrap();
    assert_eq!(q.delete(&m).await, Err(QueueError::NotFound));
    assert_eq!(
        q.release(&m, Duration::ZERO).await,
        Err(QueueError::NotFound)
    );
    assert_eq!(q.approximate_count().await.unwrap(), 1);

    // A deleted message is NotFound too.
    q.send("gone", Duration::ZERO).await.unwrap();
    let g = receive_within(&q, 1, LEASE, DEADLINE).await.remove(0);
    assert_eq!(g.text, "gone");
    q.delete(&g).await.unwrap();
    assert_eq!(q.delete(&g).await, Err(QueueError::NotFound));
    assert_eq!(
        q.release(&g, Duration::ZERO).await,
        Err(QueueError::NotFound)
    );
}

async fn release_makes_visible_again(q: Queue) {
    q.send("released", Duration::ZERO).await.unwrap();
    let m = receive_within(&q, 1, LEASE, DEADLINE).await.remove(0);
    q.release(&m, Duration::ZERO).await.unwrap();
    // Visible at once: well before the 60 s lease would have run out.
    let again = receive_within(&q, 1, LEASE, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1, "release did not make it visible");
    assert_eq!(again[0].id, m.id);
    assert_eq!(again[0].text, "released");
    assert_eq!(again[0].dequeue_count, 2);
    q.delete(&again[0]).await.unwrap();
}

async fn release_with_delay(q: Queue) {
    q.send("later", Duration::ZERO).await.unwrap();
    let m = receive_within(&q, 1, LEASE, DEADLINE).await.remove(0);
    let released = Instant::now();
    q.release(&m, Duration::from_secs(2)).await.unwrap();
    assert!(q.receive(1, LEASE).await.unwrap().is_empty());
    let again = receive_within(&q, 1, LEASE, DEADLINE).await;
    assert_eq!(again.len(), 1);
    assert!(released.elapsed() >= Duration::from_secs(1));
}

async fn approximate_count_includes_invisible(q: Queue) {
    assert_eq!(q.approximate_count().await.unwrap(), 0);
    q.send("a", Duration::ZERO).await.unwrap();
    q.send("b", Duration::ZERO).await.unwrap();
    q.send("c", Duration::from_secs(300)).await.unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), 3);
    let m = receive_within(&q, 1, LEASE, DEADLINE).await.remove(0);
    assert_eq!(q.approximate_count().await.unwrap(), 3);
    q.delete(&m).await.unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), 2);
}

async fn clear_removes_everything(q: Queue) {
    q.send("visible", Duration::ZERO).await.unwrap();
    q.send("invisible", Duration::from_secs(300)).await.unwrap();
    q.send("leased", Duration::ZERO).await.unwrap();
    let _leased = receive_within(&q, 1, LEASE, DEADLINE).await;
    q.clear().await.unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), 0);
    assert!(q.peek(32).await.unwrap().is_empty());
    // Clearing an empty queue is fine.
    q.clear().await.unwrap();
}

async fn ttl_is_never_expires(q: Queue) {
    q.send("forever", Duration::ZERO).await.unwrap();
    let m = receive_within(&q, 1, LEASE, DEADLINE).await.remove(0);
    let expires = m.expires_at.expect("expires_at");
    // TTL -1 is reported as 9999-12-31; the default TTL would give now + 7 days.
    assert_eq!(expires.year(), 9999, "expires_at {expires}");
}

async fn create_if_missing_is_idempotent(q: Queue) {
    q.send("kept", Duration::ZERO).await.unwrap();
    q.create_if_missing().await.unwrap();
    q.create_if_missing().await.unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), 1);
    assert_eq!(q.peek(1).await.unwrap(), vec!["kept".to_owned()]);
}

async fn peek_does_not_lease(q: Queue) {
    q.send("peeked", Duration::ZERO).await.unwrap();
    let seen = poll_until(DEADLINE, || async {
        let p = q.peek(32).await.unwrap();
        (!p.is_empty()).then_some(p)
    })
    .await
    .unwrap();
    assert_eq!(seen, vec!["peeked".to_owned()]);
    assert_eq!(q.peek(32).await.unwrap(), seen);
    assert!(q.peek(0).await.unwrap().is_empty());
    let m = q.receive(1, LEASE).await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].dequeue_count, 1);
}

async fn batch_receive(q: Queue) {
    for i in 0..5 {
        q.send(&format!("m{i}"), Duration::ZERO).await.unwrap();
    }
    assert!(q.receive(0, LEASE).await.unwrap().is_empty());
    let mut texts = HashSet::new();
    let mut ids = HashSet::new();
    let deadline = Instant::now() + DEADLINE;
    while texts.len() < 5 && Instant::now() < deadline {
        for m in q.receive(32, LEASE).await.unwrap() {
            assert!(ids.insert(m.id.clone()), "received twice");
            texts.insert(m.text);
        }
        tokio::time::sleep(POLL).await;
    }
    let want: HashSet<String> = (0..5).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want);
}

async fn concurrent_receivers_never_share_a_message(q: Queue) {
    const N: usize = 20;
    for i in 0..N {
        q.send(&format!("room-{i}"), Duration::ZERO).await.unwrap();
    }
    let workers: Vec<_> = (0..5)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let deadline = Instant::now() + DEADLINE;
                while Instant::now() < deadline {
                    let batch = q.receive(3, LEASE).await.unwrap();
                    if batch.is_empty() && q.peek(1).await.unwrap().is_empty() {
                        break;
                    }
                    for m in batch {
                        q.delete(&m).await.unwrap();
                        got.push(m.text);
                    }
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a message was handed out twice");
    assert_eq!(all.len(), N);
    assert_eq!(q.approximate_count().await.unwrap(), 0);
}

// ---- Azure-only checks -------------------------------------------------------------------

#[tokio::test]
async fn azure_missing_queue_is_an_error_not_an_empty_queue() {
    let conn = azurite().storage_connection();
    let q = Queue::azure(
        &conn,
        &unique_queue_name("never-created"),
        Duration::from_secs(10),
    )
    .unwrap();
    let err = q.receive(1, LEASE).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::Other(t) if t.contains("404")),
        "{err}"
    );
    assert!(!err.to_string().contains("sig="));
}

#[tokio::test]
async fn azure_wrong_key_is_config_and_never_leaks() {
    let StorageConnection::Sas {
        account,
        queue_endpoint,
        ..
    } = azurite().storage_connection()
    else {
        unreachable!()
    };
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5";
    let conn = StorageConnection::Sas {
        account,
        account_key: maxconf::secret::Secret::new(wrong_key),
        queue_endpoint,
    };
    let q = Queue::azure(
        &conn,
        &unique_queue_name("wrong-key"),
        Duration::from_secs(10),
    )
    .unwrap();
    let errors = [
        q.create_if_missing().await.unwrap_err(),
        q.send("x", Duration::ZERO).await.unwrap_err(),
        q.receive(1, LEASE).await.unwrap_err(),
        q.approximate_count().await.unwrap_err(),
    ];
    for err in errors {
        let text = format!("{err} {err:?}");
        assert!(matches!(err, QueueError::Config(_)), "{text}");
        assert!(text.contains("403"), "{text}");
        assert!(!text.contains("sig="), "{text}");
        assert!(!text.contains(wrong_key), "{text}");
    }
    assert!(!format!("{q:?}").contains("sig="));
}

#[tokio::test]
async fn azure_development_storage_shape() {
    // UseDevelopmentStorage=true points at Azurite's default port, with the same account.
    let dev =
        maxconf::pool::connection::resolve("S", |_| Some("UseDevelopmentStorage=true".to_owned()))
            .unwrap();
    let ours = azurite().storage_connection();
    match (dev, ours) {
        (
            StorageConnection::Sas {
                account: a,
                account_key: k,
                queue_endpoint: e,
            },
            StorageConnection::Sas {
                account: b,
                account_key: l,
                ..
            },
        ) => {
            assert_eq!(a, b);
            assert_eq!(k, l);
            assert_eq!(e.as_str(), "http://127.0.0.1:10001/devstoreaccount1");
        }
        other => panic!("{other:?}"),
    }
    assert_ne!(azurite().port(), 0);
}

/// The SAS maxconf signs from an account key grants what the queue backend uses and nothing
/// more: Azurite (which enforces account SAS permissions per operation) accepts queue creation
/// and refuses listing queues and setting queue metadata. (Deleting a queue stays possible:
/// `d` is needed for Clear Messages and the container scope for creation.)
#[tokio::test]
async fn azure_signed_sas_grants_only_the_operations_used() {
    use maxconf::pool::connection::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};
    use maxconf::secret::Secret;
    maxconf::tls::ensure_crypto_provider();
    let endpoint = azurite().queue_endpoint();
    let now = time::OffsetDateTime::now_utc();
    let sas = maxconf::pool::sas::account_sas(
        DEV_ACCOUNT,
        &Secret::new(DEV_ACCOUNT_KEY),
        &endpoint.parse().unwrap(),
        now - time::Duration::minutes(5),
        now + time::Duration::hours(1),
    )
    .unwrap();
    let sas = sas.expose();
    let http = reqwest::Client::new();
    let queue = format!("{endpoint}/{}", unique_queue_name("sas-scope"));
    let status = |r: reqwest::Response| r.status().as_u16();

    let created = http.put(format!("{queue}?{sas}")).send().await.unwrap();
    assert_eq!(status(created), 201, "queue creation still works");
    let listed = http
        .get(format!("{endpoint}?comp=list&{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status(listed),
        403,
        "service level (list queues) is not granted"
    );
    let metadata = http
        .put(format!("{queue}?comp=metadata&{sas}"))
        .header("x-ms-meta-who", "me")
        .send()
        .await
        .unwrap();
    assert_eq!(status(metadata), 403, "write (set metadata) is not granted");
}
