//! A fixed pool of threads for storage reads and write preparation, one per core by default.
//!
//! Tokio's blocking pool starts a thread per concurrently blocked task (64 concurrent requests:
//! 64 threads), and on a small machine those threads spend their time switching between each
//! other. A pool sized to the cores runs the same work with a handful of threads that take the
//! next job without parking while jobs are queued.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("the storage pool is shut down")]
    Closed,
    #[error("the storage pool could not start: {0}")]
    Start(String),
}

/// The process's pool, started on first use (like tokio's blocking pool, which it replaces for
/// storage work).
static SHARED: OnceLock<Result<StoragePool, String>> = OnceLock::new();

/// Runs storage work on the process's storage pool and waits for it without blocking the
/// executor.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PoolError> {
    let pool = SHARED.get_or_init(|| StoragePool::for_this_machine().map_err(|e| e.to_string()));
    match pool {
        Ok(pool) => pool.run(work).await,
        Err(err) => Err(PoolError::Start(err.clone())),
    }
}

/// Queues storage work on the process's pool without waiting for it (the work reports back
/// itself, e.g. through a channel).
pub fn spawn(work: impl FnOnce() + Send + 'static) -> Result<(), PoolError> {
    let pool = SHARED.get_or_init(|| StoragePool::for_this_machine().map_err(|e| e.to_string()));
    match pool {
        Ok(pool) => pool
            .jobs
            .send(Box::new(work))
            .map_err(|_| PoolError::Closed),
        Err(err) => Err(PoolError::Start(err.clone())),
    }
}

pub struct StoragePool {
    jobs: mpsc::Sender<Job>,
}

impl StoragePool {
    /// Starts `threads` threads (at least one).
    pub fn start(threads: usize) -> Result<StoragePool, std::io::Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("hearth-storage-{i}"))
                .spawn(move || loop {
                    // One thread waits on the queue at a time; the lock is released before
                    // the job runs, so the others can take the next one.
                    let job = match queue.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(StoragePool { jobs })
    }

    /// Two threads per core this process may run on, at least four: few enough not to thrash,
    /// enough that one long job (a scan, an index build batch, a read that waits on the disk)
    /// does not hold up every other request.
    pub fn for_this_machine() -> Result<StoragePool, std::io::Error> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        StoragePool::start((2 * cores).max(4))
    }

    /// Runs `work` on the pool and waits for it without blocking the executor.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| PoolError::Closed)?;
        result.await.map_err(|_| PoolError::Closed)
    }
}
