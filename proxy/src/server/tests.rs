use super::*;
use futures_util::FutureExt;

#[tokio::test]
async fn shutdown_changed_stays_pending_across_polls_and_wakes_when_the_flag_turns() {
    let (flag, mut watch) = tokio::sync::watch::channel(false);
    let waiting = shutdown_changed(&mut watch);
    tokio::pin!(waiting);
    // A connection polls it at every wake-up: it stays pending while the flag stands.
    for _ in 0..3 {
        assert!(waiting.as_mut().now_or_never().is_none(), "pending");
    }
    flag.send(true).expect("a receiver is open");
    // Resolved by the wake-up of the waker it registered on its first poll.
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("resolved once the flag turned");
}

#[tokio::test]
async fn shutdown_changed_wakes_a_waiting_task() {
    let (flag, mut watch) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { shutdown_changed(&mut watch).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!task.is_finished(), "waits while the flag stands");
    flag.send(true).expect("a receiver is open");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("woken")
        .expect("finished");
}

#[tokio::test]
async fn shutdown_changed_resolves_when_the_flag_is_gone() {
    let (flag, mut watch) = tokio::sync::watch::channel(false);
    let waiting = shutdown_changed(&mut watch);
    tokio::pin!(waiting);
    assert!(waiting.as_mut().now_or_never().is_none(), "pending");
    drop(flag);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("resolved once the sender left");
}
