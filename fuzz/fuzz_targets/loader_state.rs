//! A saved loader state (`LoaderState`, JSON as the trainer stores it with
//! its checkpoint) from arbitrary bytes: what parses must serialize back to
//! the same state, and resuming from it must plan the epoch or refuse, for
//! every rank of a few world sizes, without panicking. The plan is built by
//! `loader::fuzzing::rank_plan` (the private plan's core, opened by the
//! `fuzzing` feature), the dataset-free core of
//! `LoaderBuilder::resume(..).build()`, over a fixed set of row groups.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use must_ds::loader::fuzzing::{rank_plan, Mixing, PlanOptions, Unit};
use must_ds::loader::LoaderState;

/// Batch size of the resumed loader.
const BATCH: usize = 4;

/// Nine row groups of five shards, two sources, an empty one included.
fn units() -> &'static [Unit] {
    static U: OnceLock<Vec<Unit>> = OnceLock::new();
    U.get_or_init(|| {
        let rows = [16u32, 16, 9, 32, 0, 7, 16, 16, 3];
        rows.iter()
            .enumerate()
            .map(|(i, &rows)| Unit {
                shard: i as u64 / 2,
                row_group: i % 2,
                rows,
                source: if i % 3 == 0 { "b" } else { "a" }.to_owned(),
                est_bytes: 1000 * rows as u64,
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(state) = serde_json::from_slice::<LoaderState>(data) else {
        return;
    };
    let json = serde_json::to_vec(&state).expect("a loader state serializes");
    match serde_json::from_slice::<LoaderState>(&json) {
        Ok(back) => assert_eq!(back, state, "state changed on a JSON round trip"),
        Err(e) => panic!(
            "a parsed state does not parse back: {e}\n{}",
            String::from_utf8_lossy(&json)
        ),
    }

    let weighted: BTreeMap<String, f64> = [("a".to_owned(), 1.0), ("b".to_owned(), 3.0)].into();
    for mixing in [
        Mixing {
            weights: None,
            epoch_size: None,
        },
        Mixing {
            weights: Some(weighted),
            epoch_size: Some(50),
        },
    ] {
        for pad in [false, true] {
            let o = PlanOptions {
                batch_size: BATCH,
                shuffle_row_groups: 2,
                pad,
                mixing: mixing.clone(),
                seed: state.seed,
                epoch: state.epoch,
            };
            for world in 1..=3usize {
                for rank in 0..world {
                    let Ok(mut plan) = rank_plan(units(), &o, &state.segments, rank, world) else {
                        continue;
                    };
                    assert!(
                        plan.done <= plan.batches,
                        "{} batches done of {}",
                        plan.done,
                        plan.batches
                    );
                    // Draw what is left of the rank's segment.
                    let left = (plan.batches - plan.done) * BATCH as u64;
                    for _ in 0..left {
                        if plan.sampler.draw().is_none() {
                            break;
                        }
                    }
                    let _ = plan.sampler.remaining();
                }
            }
        }
    }
});
