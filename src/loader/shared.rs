//! What the coordinator and the workers share: the checked options, the
//! tasks, the counters, the skip report and the recycled batches.

use std::sync::{Arc, Mutex};

use crossbeam_channel as cb;

use super::batch::Batch;
use super::config::Config;
use super::corrupt::CorruptReport;
use super::metrics::Metrics;
use crate::format::TaskDef;

/// What the workers share: the checked options, the tasks' definitions,
/// the counters, the skip report and recycled batches.
pub(super) struct Shared {
    pub(super) cfg: Arc<Config>,
    pub(super) tasks: Vec<TaskDef>,
    /// Indices (in `tasks`) of the required tasks.
    pub(super) required: Vec<usize>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) skipped: Arc<Mutex<Vec<CorruptReport>>>,
    pub(super) spare: cb::Receiver<Batch>,
}

impl Shared {
    /// Records a sample or row group left out under `Skip`.
    pub(super) fn skip(&self, rep: CorruptReport) {
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rep);
    }
}
