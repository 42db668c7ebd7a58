//! The cluster's records in a real etcd (`weir_cluster`), below the CLI.

use std::time::Duration;

use weir_cluster::{Membership, Part};
use weir_tests::etcd::EtcdServer;

fn part(job: &str) -> Part {
    Part {
        job: job.to_string(),
        attempt: 1,
        job_file: "job.toml".into(),
        job_toml: String::new(),
        workers: vec!["127.0.0.1:1".into()],
        worker_ids: vec!["w1".into()],
        here: 0,
        assignment: vec![vec![0]],
        slots: 1,
        incarnation: 0,
        parallelism: None,
        job_parallelism: None,
        checkpoints: None,
    }
}

#[test]
fn two_placements_read_at_the_same_time_cannot_both_commit() {
    let etcd = EtcdServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = Membership::connect(std::slice::from_ref(&etcd.url), Duration::from_secs(5))
            .await
            .unwrap();
        // Two controllers read the same free slots…
        let (used, seen) = m.slots_in_use().await.unwrap();
        assert!(used.is_empty());
        // …the first placement commits, the second finds it came late.
        assert!(
            m.assign_all(&[("w1".into(), part("a"))], seen)
                .await
                .unwrap()
        );
        assert!(
            !m.assign_all(&[("w1".into(), part("b"))], seen)
                .await
                .unwrap()
        );
        let (used, again) = m.slots_in_use().await.unwrap();
        assert_eq!(used.get("w1"), Some(&1));
        assert!(again > seen);
        // Placed again on what it reads now, it commits.
        assert!(
            m.assign_all(&[("w1".into(), part("b"))], again)
                .await
                .unwrap()
        );
        let jobs: Vec<String> = m
            .parts()
            .await
            .unwrap()
            .into_iter()
            .map(|(_, p)| p.job)
            .collect();
        assert_eq!(jobs, ["a", "b"]);
    });
}

#[test]
fn checkpoint_commands_reach_a_follower_in_order_and_only_for_its_attempt() {
    use weir_cluster::checkpoints::command_key;
    let etcd = EtcdServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let members = Membership::connect(std::slice::from_ref(&etcd.url), Duration::from_secs(5))
            .await
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let _follow = members
            .follow(command_key("j", 2), false, move |_, n: u64| {
                tx.send(n).is_ok()
            })
            .await
            .unwrap();
        let writer = members.writer();
        for n in 1..=50u64 {
            // The same job's earlier attempt is another key: never heard.
            writer.put(command_key("j", 1), &(1000 + n));
            writer.put(command_key("j", 2), &n);
        }
        let got: Vec<u64> = tokio::task::spawn_blocking(move || {
            (0..50)
                .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
                .collect()
        })
        .await
        .unwrap();
        assert_eq!(got, (1..=50).collect::<Vec<u64>>());
    });
}
