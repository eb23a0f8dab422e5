//! Many epochs of one rank, the next one started while the current one ends.

use super::batch::Batch;
use super::config::LoaderState;
use super::metrics::MetricsSnapshot;
use super::{Loader, LoaderBuilder};
use crate::error::Result;

/// Many epochs of one rank with the pipeline kept full
/// ([`LoaderBuilder::epochs`]): an iterator of `Result<Batch>`, each batch
/// carrying its epoch.
pub struct Epochs {
    pub(super) template: LoaderBuilder,
    pub(super) current: Option<Loader>,
    pub(super) next: Option<Loader>,
    pub(super) rest: std::ops::Range<u64>,
    pub(super) ahead: u64,
    pub(super) last: MetricsSnapshot,
}

impl Epochs {
    /// The current epoch's loader (`None` after the last).
    pub fn current(&self) -> Option<&Loader> {
        self.current.as_ref()
    }

    /// Where the current epoch stands (see [`Loader::state`]).
    pub fn state(&self) -> Option<LoaderState> {
        self.current.as_ref().map(Loader::state)
    }

    /// The current epoch's counters (the last epoch's after the end).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.current.as_ref().map_or(self.last, Loader::metrics)
    }

    /// Hands a batch's buffers back for reuse.
    pub fn recycle(&self, batch: Batch) {
        if let Some(l) = self.next.as_ref().or(self.current.as_ref()) {
            l.recycle(batch);
        }
    }

    /// When the current epoch has yielded its last batch, moves on to the
    /// next one (started now if it was not prefetched), so that
    /// [`current`](Self::current) is the epoch the next batch comes from.
    /// Does nothing otherwise.
    pub fn advance(&mut self) -> Result<()> {
        match self.current.as_ref() {
            Some(cur) if cur.remaining() == 0 && !cur.failed => self.last = cur.metrics(),
            _ => return Ok(()),
        }
        self.start_next()?;
        self.current = self.next.take();
        Ok(())
    }

    /// Builds the next epoch's loader if it is not built yet.
    fn start_next(&mut self) -> Result<()> {
        if self.next.is_none() {
            if let Some(e) = self.rest.next() {
                match self.template.clone().epoch(e).build() {
                    Ok(l) => self.next = Some(l),
                    Err(err) => {
                        self.rest = 0..0;
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Iterator for Epochs {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        loop {
            let cur = self.current.as_ref()?;
            if self.next.is_none() && cur.remaining() <= self.ahead {
                if let Err(err) = self.start_next() {
                    return Some(Err(err));
                }
            }
            let cur = self.current.as_mut()?;
            match cur.next() {
                Some(r) => return Some(r),
                None => {
                    self.last = cur.metrics();
                    if cur.failed {
                        self.current = None;
                        return None;
                    }
                    self.current = self.next.take();
                }
            }
        }
    }
}
