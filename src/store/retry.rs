//! Retries with bounded exponential backoff around any store, and a
//! fault-injecting store for tests. Every dataset opened by URL goes
//! through [`RetryStore`]; cloud stores also retry inside object_store.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Errors that are answers, not failures: never retried.
fn is_final(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    matches!(
        e,
        E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
    )
}

/// How many times, and how long to wait between.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubles each time.
    pub first_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Retries failed requests of the inner store.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn retry<T, F, Fut>(&self, what: &str, path: &Path, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut wait = self.policy.first_backoff;
        let attempts = self.policy.attempts.max(1);
        for attempt in 0.. {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if is_final(&e) => return Err(e),
                Err(e) if attempt + 1 >= attempts => {
                    return Err(object_store::Error::Generic {
                        store: "retry",
                        source: format!("{what} {path} failed {attempts} times; last error: {e}")
                            .into(),
                    })
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.policy.max_backoff);
                }
            }
        }
        unreachable!("the loop returns")
    }
}

impl std::fmt::Display for RetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        let retried = std::sync::atomic::AtomicBool::new(false);
        let r = self
            .retry("put", location, |attempt| {
                retried.store(attempt > 0, Ordering::Relaxed);
                self.inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await;
        match r {
            // A create retried after a failure may find its own first
            // attempt, which landed though its answer was lost: compare the
            // bytes. On a first attempt, AlreadyExists is another writer's.
            Err(object_store::Error::AlreadyExists { .. })
                if create && retried.load(Ordering::Relaxed) =>
            {
                let existing = self
                    .retry("get", location, |_| async {
                        self.inner
                            .get_opts(location, GetOptions::default())
                            .await?
                            .bytes()
                            .await
                    })
                    .await?;
                let ours: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
                if existing.as_ref() == ours.as_slice() {
                    Ok(PutResult {
                        e_tag: None,
                        version: None,
                        extensions: Default::default(),
                    })
                } else {
                    Err(object_store::Error::AlreadyExists {
                        path: location.to_string(),
                        source: "another writer created it".into(),
                    })
                }
            }
            other => other,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.retry("get", location, |_| {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.retry("get ranges of", location, |_| {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_with_offset_opt(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_with_offset_opt(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let p = prefix.cloned().unwrap_or_default();
        self.retry("list", &p, |_| self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.retry("copy", from, |_| {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

impl RetryStore {
    /// A listing is retried whole: it is collected, then replayed.
    fn list_with_offset_opt(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, policy) = (self.inner.clone(), self.policy);
        let (prefix, offset) = (prefix.cloned(), offset.cloned());
        futures::stream::once(async move {
            let me = RetryStore {
                inner: inner.clone(),
                policy,
            };
            let p = prefix.clone().unwrap_or_default();
            me.retry("list", &p, |_| {
                let s = match &offset {
                    Some(o) => inner.list_with_offset(prefix.as_ref(), o),
                    None => inner.list(prefix.as_ref()),
                };
                s.try_collect::<Vec<_>>()
            })
            .await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }
}

/// Fails a share of requests, for tests: before the inner call, or (for
/// puts) after it, as when an answer is lost. Requests to paths containing
/// `always_fail` fail every time. Optionally every request waits a fixed
/// latency first (`with_latency`), as with a distant object store.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rate: f64,
    always_fail: Option<String>,
    counter: AtomicU64,
    seed: u64,
    latency: Duration,
    lost_create_answers: bool,
    /// Injected failures so far.
    pub injected: AtomicU64,
}

impl FaultyStore {
    /// Fails `rate` of requests (deterministically from `seed`).
    pub fn new(inner: Arc<dyn ObjectStore>, rate: f64, seed: u64) -> Self {
        Self {
            inner,
            rate,
            always_fail: None,
            counter: AtomicU64::new(0),
            seed,
            latency: Duration::ZERO,
            lost_create_answers: false,
            injected: AtomicU64::new(0),
        }
    }

    /// Every create-if-absent that lands answers "already exists", as when
    /// an HTTP layer retried it by itself after losing the first answer.
    pub fn with_lost_create_answers(mut self) -> Self {
        self.lost_create_answers = true;
        self
    }

    /// Adds `latency` to every request, as a distant store would.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    /// Every request to a path containing `part` fails.
    pub fn always_failing(mut self, part: &str) -> Self {
        self.always_fail = Some(part.to_owned());
        self
    }

    fn fault(&self, path: &Path) -> Result<()> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // A small hash of (seed, n): deterministic, evenly spread.
        let mut x = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let unlucky = (x as f64 / u64::MAX as f64) < self.rate;
        let doomed = self
            .always_fail
            .as_ref()
            .is_some_and(|p| path.as_ref().contains(p.as_str()));
        if unlucky || doomed {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected failure on {path}").into(),
            });
        }
        Ok(())
    }
}

/// `stream`, starting after `latency`.
fn delayed<T: Send + 'static>(
    latency: Duration,
    stream: BoxStream<'static, T>,
) -> BoxStream<'static, T> {
    if latency.is_zero() {
        return stream;
    }
    futures::stream::once(async move {
        tokio::time::sleep(latency).await;
        stream
    })
    .flatten()
    .boxed()
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.delay().await;
        self.fault(location)?;
        let create = matches!(opts.mode, PutMode::Create);
        let r = self.inner.put_opts(location, payload, opts).await?;
        if create && self.lost_create_answers {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::AlreadyExists {
                path: location.to_string(),
                source: "the retried request found the first one's object".into(),
            });
        }
        // Half the put faults happen after the write: the answer is lost.
        self.fault(location).map(|_| r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.delay().await;
        self.fault(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.delay().await;
        self.fault(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.delay().await;
        self.fault(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.fault(&prefix.cloned().unwrap_or_default()) {
            Ok(()) => delayed(self.latency, self.inner.list(prefix)),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.fault(&prefix.cloned().unwrap_or_default()) {
            Ok(()) => delayed(self.latency, self.inner.list_with_offset(prefix, offset)),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.delay().await;
        self.fault(&prefix.cloned().unwrap_or_default())?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.delay().await;
        self.fault(from)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.delay().await;
        self.fault(from)?;
        self.inner.rename_opts(from, to, options).await
    }
}
