//! The external cache: Redis, driven by one side thread with its own tokio runtime.
//!
//! A worker never talks to Redis itself: it puts a request in a bounded queue (`try_send`: a
//! full queue is a miss, never a wait) and awaits the answer on a oneshot with a timeout,
//! serving its other connections meanwhile. The side thread keeps one multiplexed connection,
//! runs every request as its own task on it, and reconnects at most once per
//! [`RECONNECT_AFTER_MS`]. A Redis that is down, slow or refusing is a miss (and a store that
//! did not happen), logged once per outage and counted in the worker's stats slot, never a
//! failed request (APIM: a cache that cannot be reached "doesn't raise an error").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the side thread: past it, a request is a miss at once.
pub const QUEUE_REQUESTS_MAX: usize = 4096;
/// A worker waits this long for Redis's answer; then the request is a miss.
pub const REPLY_TIMEOUT_MS: u64 = 250;
/// Connecting to Redis may take this long.
pub const CONNECT_TIMEOUT_MS: u64 = 1000;
/// After a failed connect, requests miss at once for this long before the next attempt.
pub const RECONNECT_AFTER_MS: u64 = 1000;

/// What a worker asks of Redis.
#[derive(Debug)]
enum Command {
    Get(String),
    /// Key, value, seconds to live (≥ 1).
    Set(String, Vec<u8>, u64),
    Delete(String),
}

/// One request and where its answer goes.
#[derive(Debug)]
struct Job {
    command: Command,
    reply: oneshot::Sender<Result<Option<Vec<u8>>, ()>>,
}

/// A handle on the side thread; cloned into every snapshot with the same `redis-url`.
#[derive(Debug, Clone)]
pub struct ExternalCache {
    url: Arc<str>,
    jobs: mpsc::Sender<Job>,
}

impl PartialEq for ExternalCache {
    fn eq(&self, other: &Self) -> bool {
        self.jobs.same_channel(&other.jobs)
    }
}

impl Eq for ExternalCache {}

/// Why an external operation gave nothing: the worker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl ExternalCache {
    /// Starts the side thread for `url` (it connects on the first request). A URL the redis
    /// crate refuses gives a cache whose every request misses, logged.
    pub fn start(url: &str) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let client = redis::Client::open(url);
        let spawned = std::thread::Builder::new().name("portcullis-redis".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match (runtime, client) {
                (Ok(runtime), Ok(client)) => runtime.block_on(serve(client, queue)),
                (Err(error), _) => tracing::error!(%error, "cannot start the external cache's runtime"),
                // The URL may hold a password: the error is not printed.
                (_, Err(_)) => tracing::error!("the external cache's redis-url is not usable"),
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the external cache's thread");
        }
        Self { url: Arc::from(url), jobs }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bytes under `key`; `Ok(None)` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        self.ask(Command::Get(key.to_owned())).await
    }

    /// Keeps `value` under `key` for `ttl` (rounded up to whole seconds).
    pub async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), Unavailable> {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        if seconds == 0 {
            return self.delete(key).await;
        }
        self.ask(Command::Set(key.to_owned(), value, seconds)).await.map(|_| ())
    }

    pub async fn delete(&self, key: &str) -> Result<(), Unavailable> {
        self.ask(Command::Delete(key.to_owned())).await.map(|_| ())
    }

    /// Queues a store without waiting for it (APIM's stores are asynchronous too); `false`:
    /// the queue is full or the thread gone, nothing will be stored.
    pub fn set_detached(&self, key: &str, value: Vec<u8>, ttl: Duration) -> bool {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let command =
            if seconds == 0 { Command::Delete(key.to_owned()) } else { Command::Set(key.to_owned(), value, seconds) };
        self.detached(command)
    }

    /// Queues a removal without waiting for it; `false`: not queued.
    pub fn delete_detached(&self, key: &str) -> bool {
        self.detached(Command::Delete(key.to_owned()))
    }

    fn detached(&self, command: Command) -> bool {
        let (reply, _) = oneshot::channel();
        self.jobs.try_send(Job { command, reply }).is_ok()
    }

    async fn ask(&self, command: Command) -> Result<Option<Vec<u8>>, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(Job { command, reply }).map_err(|_| Unavailable)?;
        match tokio::time::timeout(Duration::from_millis(REPLY_TIMEOUT_MS), answer).await {
            Ok(Ok(Ok(value))) => Ok(value),
            _ => Err(Unavailable),
        }
    }
}

/// The side thread's loop: one connection, one task per request, reconnect with a pause.
async fn serve(client: redis::Client, mut queue: mpsc::Receiver<Job>) {
    let down = Arc::new(AtomicBool::new(false));
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut retry_at = Instant::now();
    while let Some(job) = queue.recv().await {
        if connection.is_none() && Instant::now() >= retry_at {
            connection = connect(&client, &down).await;
            if connection.is_none() {
                retry_at = Instant::now() + Duration::from_millis(RECONNECT_AFTER_MS);
            }
        }
        let Some(live) = connection.clone() else {
            let _ = job.reply.send(Err(()));
            continue;
        };
        let task_down = down.clone();
        tokio::spawn(async move {
            let down = task_down;
            let answer = run(live, job.command).await;
            match &answer {
                Ok(_) => {
                    if down.swap(false, Ordering::Relaxed) {
                        tracing::info!("the external cache answers again");
                    }
                }
                Err(error) => {
                    if !down.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "the external cache failed; its requests are misses until it answers");
                    }
                }
            }
            let _ = job.reply.send(answer.map_err(|_| ()));
        });
        // A connection whose requests fail is replaced on the next request after the pause.
        if down.load(Ordering::Relaxed) && Instant::now() >= retry_at {
            connection = None;
            retry_at = Instant::now() + Duration::from_millis(RECONNECT_AFTER_MS);
        }
    }
}

async fn connect(client: &redis::Client, down: &AtomicBool) -> Option<redis::aio::MultiplexedConnection> {
    let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    match tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await {
        Ok(Ok(connection)) => Some(connection),
        Ok(Err(error)) => {
            if !down.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "cannot connect to the external cache; its requests are misses until it answers");
            }
            None
        }
        Err(_) => {
            if !down.swap(true, Ordering::Relaxed) {
                tracing::warn!("connecting to the external cache timed out; its requests are misses until it answers");
            }
            None
        }
    }
}

async fn run(
    mut connection: redis::aio::MultiplexedConnection,
    command: Command,
) -> redis::RedisResult<Option<Vec<u8>>> {
    match command {
        Command::Get(key) => connection.get(key).await,
        Command::Set(key, value, seconds) => connection.set_ex::<_, _, ()>(key, value, seconds).await.map(|()| None),
        Command::Delete(key) => connection.del::<_, ()>(key).await.map(|()| None),
    }
}
