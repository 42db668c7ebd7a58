//! The network exchange over loopback, against the engine's local exchange.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_engine::channel::{ExchangeReceiver, ExchangeSender, TrySend, local};
use weir_engine::{Message, Signal};
use weir_record::BatchBuilder;

use super::*;
use crate::sender::NetworkSender;

fn key(attempt: u64) -> ChannelKey {
    ChannelKey {
        job: "acme/clicks".into(),
        attempt,
        task: 2,
        subtask: 1,
    }
}

fn batch(tag: &str, rows: usize) -> weir_record::RecordBatch {
    let mut b = BatchBuilder::default();
    for i in 0..rows {
        b.push(tag.as_bytes(), format!("{tag}-{i}").as_bytes(), i as i64);
    }
    b.finish()
}

fn never_broken() -> receiver::OnBroken {
    Arc::new(|e| panic!("unexpected broken connection: {e}"))
}

fn server() -> DataServer {
    DataServer::bind("127.0.0.1:0", SocketSettings::default()).unwrap()
}

/// Hosts consumer exchange `key` (a local channel of `capacity`) on
/// `server` for 4 producer slots with `credits` per connection.
fn host(
    server: &DataServer,
    key: ChannelKey,
    capacity: usize,
    credits: u32,
    on_broken: receiver::OnBroken,
) -> (Registration, Box<dyn ExchangeReceiver>) {
    let (into, rx) = local(capacity);
    let inbound = Inbound {
        credits,
        producers: 4,
    };
    (server.register(key, into, inbound, on_broken), rx)
}

/// A producer's end of `key` on `server`.
fn open(server: &DataServer, key: ChannelKey) -> Arc<NetworkSender> {
    connect(
        &server.local_addr().to_string(),
        key,
        &SocketSettings::default(),
    )
    .unwrap()
}

fn recv(rx: &dyn ExchangeReceiver) -> (u32, Message) {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a message within 10 s")
}

#[test]
fn messages_of_several_producers_arrive_in_order_with_their_slots() {
    let server = server();
    let (_reg, rx) = host(&server, key(1), 4, 8, never_broken());
    let tx = open(&server, key(1));
    assert_eq!(tx.capacity(), 8);
    let sent = vec![
        (0, Message::Data(batch("a", 3))),
        (1, Message::Data(batch("b", 1000))),
        (
            0,
            Message::Signal(Signal::Watermark(weir_engine::watermark::Watermark(5))),
        ),
        (1, Message::Signal(Signal::Barrier(7))),
        (0, Message::Signal(Signal::Idle)),
        (0, Message::Signal(Signal::EndOfData)),
        (1, Message::Signal(Signal::EndOfData)),
    ];
    let expected: Vec<String> = sent.iter().map(|(s, m)| format!("{s} {m:?}")).collect();
    let producer = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for env in sent {
                tx.send(env).unwrap();
            }
        })
    };
    let got: Vec<String> = (0..expected.len())
        .map(|_| {
            let (s, m) = recv(&*rx);
            format!("{s} {m:?}")
        })
        .collect();
    producer.join().unwrap();
    assert_eq!(got, expected);
}

#[test]
fn a_producer_sends_only_against_credit_and_resumes_when_the_consumer_reads() {
    let server = server();
    // One local buffer and two credits: with the consumer not reading, at
    // most 1 (in the local channel) + 1 (held by the forwarder) + 2 (on the
    // wire) messages get out before the producer runs out of credit.
    let (_reg, rx) = host(&server, key(1), 1, 2, never_broken());
    let tx = open(&server, key(1));
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tx.try_send((0, Message::Data(batch("x", 10)))) {
            Ok(()) => sent += 1,
            Err(TrySend::Full(_)) => {
                // Credit may still be on its way back: full for good only
                // once no credit arrives for a while.
                std::thread::sleep(Duration::from_millis(100));
                if tx.credit() == 0 {
                    break;
                }
            }
            Err(TrySend::Disconnected) => panic!("disconnected"),
        }
        assert!(Instant::now() < deadline, "never ran out of credit");
        assert!(sent <= 4, "sent {sent} messages past the credit window");
    }
    assert!(sent >= 2, "sent only {sent}");
    // A blocking send waits for credit, which comes back once the consumer
    // reads.
    // Timed from here: the consumer reads only after the sleep below, so
    // the send cannot return sooner, however late its thread starts.
    let start = Instant::now();
    let blocked = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            tx.send((0, Message::Signal(Signal::EndOfData))).unwrap();
            start.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..sent {
        assert!(matches!(recv(&*rx), (0, Message::Data(_))));
    }
    assert!(matches!(
        recv(&*rx),
        (0, Message::Signal(Signal::EndOfData))
    ));
    assert!(blocked.join().unwrap() >= Duration::from_millis(200));
}

#[test]
fn unknown_channels_and_earlier_attempts_are_refused() {
    let server = server();
    let (_reg, _rx) = host(&server, key(3), 1, 2, never_broken());
    let addr = server.local_addr().to_string();
    let e = connect(&addr, key(2), &SocketSettings::default())
        .err()
        .expect("refused");
    assert!(
        e.to_string()
            .contains("attempt 2 of job `acme/clicks` is over (attempt 3 runs now)"),
        "{e}"
    );
    assert!(matches!(e, NetError::Refused { retry: false, .. }), "{e}");
    let mut other = key(3);
    other.subtask = 9;
    let e = connect(&addr, other, &SocketSettings::default())
        .err()
        .expect("refused");
    assert!(matches!(e, NetError::Refused { retry: true, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("hosts no job `acme/clicks` attempt 3 task 2 subtask 9"),
        "{e}"
    );
    // Nothing listens: a clear error naming the address.
    drop(server);
    let e = connect(&addr, key(3), &SocketSettings::default())
        .err()
        .expect("no server");
    assert!(e.to_string().contains(&addr), "{e}");
}

#[test]
fn a_producer_lost_before_its_end_is_reported_and_a_clean_end_is_not() {
    let server = server();
    let (broken_tx, broken_rx) = mpsc::channel();
    let broken_tx = std::sync::Mutex::new(broken_tx);
    let (_reg, rx) = host(
        &server,
        key(1),
        16,
        4,
        Arc::new(move |e| {
            let _ = broken_tx.lock().unwrap().send(e.to_string());
        }),
    );
    let addr = server.local_addr().to_string();
    // Ends its data, then closes: fine.
    let tx = connect(&addr, key(1), &SocketSettings::default()).unwrap();
    tx.send((0, Message::Data(batch("a", 1)))).unwrap();
    tx.send((0, Message::Signal(Signal::EndOfData))).unwrap();
    drop(tx);
    recv(&*rx);
    recv(&*rx);
    assert!(broken_rx.recv_timeout(Duration::from_millis(300)).is_err());
    // Closes with data not ended: reported.
    let tx = connect(&addr, key(1), &SocketSettings::default()).unwrap();
    tx.send((1, Message::Data(batch("b", 1)))).unwrap();
    drop(tx);
    let why = broken_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        why.contains("closed the connection with 1 producer(s) not ended"),
        "{why}"
    );
    // A message for a slot the consumer does not have breaks the
    // connection (it would index past the consumer's producers).
    let tx = connect(&addr, key(1), &SocketSettings::default()).unwrap();
    tx.send((9, Message::Data(batch("c", 1)))).unwrap();
    let why = broken_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        why.contains("a message for producer slot 9 of a consumer with 4"),
        "{why}"
    );
}

#[test]
fn a_consumer_that_goes_away_disconnects_its_producers() {
    let server = server();
    let (reg, rx) = host(&server, key(1), 1, 2, never_broken());
    let tx = open(&server, key(1));
    tx.send((0, Message::Data(batch("a", 1)))).unwrap();
    drop(reg);
    drop(rx);
    // The forwarder finds the consumer gone on its next message and closes
    // the connection; the producer's sends then fail instead of hanging.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tx.try_send((0, Message::Data(batch("b", 1)))) {
            Err(TrySend::Disconnected) => break,
            Ok(()) | Err(TrySend::Full(_)) => std::thread::sleep(Duration::from_millis(20)),
        }
        assert!(
            Instant::now() < deadline,
            "the producer never saw the consumer go"
        );
    }
}

#[test]
fn time_waiting_for_credit_is_the_backpressure_figure() {
    use weir_engine::NodeMetrics;
    use weir_engine::channel::EdgeSender;
    use weir_engine::plan::Partitioning;

    let server = server();
    let (_reg, rx) = host(&server, key(1), 1, 2, never_broken());
    let tx = open(&server, key(1));
    let metrics = Arc::new(NodeMetrics::new(1));
    let edge = EdgeSender::new(vec![tx], Partitioning::Forward, 0, 0, 0);
    let mut out = weir_engine::channel::TaskOutput::new(vec![edge], metrics.clone());
    // The consumer starts reading after 300 ms: until then the producer
    // runs out of credit and waits.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut n = 0;
        while let Ok((_, m)) = rx.recv_timeout(Duration::from_secs(10)) {
            if matches!(m, Message::Signal(Signal::EndOfData)) {
                break;
            }
            n += 1;
        }
        n
    });
    for _ in 0..10 {
        out.send(batch("x", 10)).unwrap();
    }
    out.signal(Signal::EndOfData).unwrap();
    assert_eq!(reader.join().unwrap(), 10);
    // At least most of the consumer's 300 ms pause (a lower bound only).
    let blocked = metrics.backpressured();
    assert!(blocked >= Duration::from_millis(200), "{blocked:?}");
}

#[test]
fn a_port_with_the_cluster_secret_refuses_producers_that_do_not_hold_it() {
    let secret = ClusterSecret::new(b"the cluster secret, 32 bytes....").unwrap();
    let with = |secret: Option<ClusterSecret>| SocketSettings {
        secret,
        ..SocketSettings::default()
    };
    let server = DataServer::bind("127.0.0.1:0", with(Some(secret.clone()))).unwrap();
    let (_reg, rx) = host(&server, key(1), 4, 4, never_broken());
    let addr = server.local_addr().to_string();
    let other = ClusterSecret::new(b"another secret of the same size.").unwrap();
    for (who, settings) in [
        ("no secret", with(None)),
        ("another secret", with(Some(other))),
    ] {
        let e = connect(&addr, key(1), &settings)
            .err()
            .unwrap_or_else(|| panic!("a producer with {who} is let in"));
        assert!(
            matches!(e, NetError::Refused { retry: false, .. }),
            "{who}: {e}"
        );
        assert!(
            e.to_string()
                .contains("does not hold this worker's cluster secret"),
            "{who}: {e}"
        );
    }
    // Nothing reached the consumer; a producer with the secret gets through.
    assert!(rx.try_recv().is_err());
    let tx = connect(&addr, key(1), &with(Some(secret))).unwrap();
    tx.send((0, Message::Data(batch("a", 3)))).unwrap();
    let (slot, msg) = recv(&*rx);
    assert_eq!(slot, 0);
    assert!(matches!(msg, Message::Data(b) if b.len() == 3));
    // A secret too short to be one is refused when it is read.
    let e = ClusterSecret::new(b"short").unwrap_err();
    assert!(e.contains("at least 16 bytes"), "{e}");
}
