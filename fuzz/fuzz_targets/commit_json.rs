//! A log file (`_must/log/{version:020}.json`) from arbitrary bytes: parsing
//! must refuse what is not a commit without panicking; what parses must
//! serialize and parse back to the same commit, and replaying it on an
//! empty snapshot (twice, as a log that repeats itself) must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use must_ds::format::Commit;
use must_ds::Snapshot;

const FILE: &str = "_must/log/00000000000000000001.json";

fuzz_target!(|data: &[u8]| {
    let Ok(commit) = Commit::from_slice(data, FILE) else {
        return;
    };
    let bytes = commit.to_bytes();
    let again = match Commit::from_slice(&bytes, FILE) {
        Ok(c) => c,
        Err(e) => panic!(
            "a parsed commit does not parse back: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(again, commit, "commit changed on a JSON round trip");

    let mut snap = Snapshot::default();
    if snap.apply(&commit, "f").is_ok() {
        // The same actions again: duplicates must be refused, not panic.
        let _ = snap.apply(&commit, "f");
        let _ = snap.live_actions();
        let _ = snap.total_rows();
    }
});
