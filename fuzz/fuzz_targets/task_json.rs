//! A task definition from arbitrary text: what `from_json` accepts must be
//! valid, and must come back equal from its own `to_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use must_ds::format::TaskDef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(task) = TaskDef::from_json(text) else {
        return;
    };
    if let Err(e) = task.validate() {
        panic!("from_json accepted a task that does not validate: {e}");
    }
    let _ = task.kind.name();
    let _ = task.kind.num_classes();
    let _ = task.kind.class_names();
    if let Some(t) = &task.teacher {
        let _ = t.describe();
    }
    let json = task.to_json();
    match TaskDef::from_json(&json) {
        Ok(back) => assert_eq!(back, task, "task changed on a round trip through {json}"),
        Err(e) => panic!("a valid task does not parse back: {e}\n{json}"),
    }
});
