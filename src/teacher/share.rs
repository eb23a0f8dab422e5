//! Which image shards a labeling worker takes when many workers label one
//! dataset: its share of a job array (index I of N, given by hand or read
//! from the scheduler's environment), and, with stealing, shards of other
//! shares that no one has labeled yet once its own are done.
//!
//! Shares are `shard id % N == I`. A worker labels its own share in
//! ascending id order, so a thief takes a victim's shards from the highest
//! id down, and each thief starts with the next worker after itself: owner
//! and thief meet at most once per victim, and two thieves meet only when
//! every share in between is done. Nothing is claimed in the store, so a
//! meeting can make two workers label the same shard; the commit of the
//! second is refused (never duplicated) and its work, at most one shard, is
//! lost.

use std::collections::BTreeSet;

/// One worker's place in a job array.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerSlot {
    /// This worker's index, `0 <= index < count`.
    pub index: u64,
    /// How many workers share the shards.
    pub count: u64,
    /// Where the index came from: `"--worker"` or the scheduler's variable.
    pub source: String,
}

impl WorkerSlot {
    /// Whether `shard` belongs to this worker's share.
    pub fn owns(&self, shard: u64) -> bool {
        shard % self.count == self.index
    }

    /// The shard to steal next from `unlabeled` (shards of other shares
    /// that no one has labeled yet and this worker has not tried): the
    /// highest id of the first share after this worker's own that has any.
    /// `None` when there is nothing left.
    pub fn next_steal(&self, unlabeled: &BTreeSet<u64>) -> Option<u64> {
        unlabeled
            .iter()
            .rev()
            .filter(|&&s| !self.owns(s))
            .min_by_key(|&&s| (s % self.count + self.count - self.index) % self.count)
            .copied()
    }
}

/// The job-array schedulers `--worker auto` reads, in the order it tries
/// them: (name, index variable).
pub const SCHEDULERS: &[(&str, &str)] = &[
    ("Slurm job array", "SLURM_ARRAY_TASK_ID"),
    ("Kubernetes Indexed Job", "JOB_COMPLETION_INDEX"),
    ("Google Cloud Batch", "BATCH_TASK_INDEX"),
    ("AWS Batch array job", "AWS_BATCH_JOB_ARRAY_INDEX"),
    ("Grid Engine array job", "SGE_TASK_ID"),
    ("PBS array job", "PBS_ARRAY_INDEX"),
    ("LSF job array", "LSB_JOBINDEX"),
];

/// Parses `--worker` (`I/N` or `auto`) with `--of N`, reading scheduler
/// variables through `env` for `auto`:
///
/// | scheduler | index I | count N |
/// |---|---|---|
/// | Slurm job array | (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN`) / `SLURM_ARRAY_TASK_STEP` | `SLURM_ARRAY_TASK_COUNT`, else `--of` |
/// | Kubernetes Indexed Job | `JOB_COMPLETION_INDEX` | `--of` (the Job's `completions`) |
/// | Google Cloud Batch | `BATCH_TASK_INDEX` | `BATCH_TASK_COUNT`, else `--of` |
/// | AWS Batch array job | `AWS_BATCH_JOB_ARRAY_INDEX` | `--of` (the array size) |
/// | Grid Engine (SGE, UGE) | (`SGE_TASK_ID` − `SGE_TASK_FIRST`) / `SGE_TASK_STEPSIZE` | from `SGE_TASK_FIRST`, `_LAST`, `_STEPSIZE`, else `--of` |
/// | PBS Pro | `PBS_ARRAY_INDEX` (arrays `-J 0-N`) | `--of` |
/// | LSF | `LSB_JOBINDEX` − 1 (arrays `[1-N]`) | `--of` |
///
/// Errors name what is missing or wrong.
pub fn parse_worker(
    spec: &str,
    of: Option<u64>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WorkerSlot, String> {
    let slot = if spec.trim() == "auto" {
        from_env(of, env)?
    } else {
        if of.is_some() {
            return Err(format!(
                "--of goes with --worker auto; --worker {spec:?} already gives the count"
            ));
        }
        let parsed = spec.split_once('/').and_then(|(i, n)| {
            Some((i.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?))
        });
        let Some((index, count)) = parsed else {
            return Err(format!(
                "--worker {spec:?}: use I/N with 0 <= I < N, or auto"
            ));
        };
        WorkerSlot {
            index,
            count,
            source: "--worker".into(),
        }
    };
    if slot.count == 0 || slot.index >= slot.count {
        return Err(format!(
            "worker index {} of {} (from {}): want 0 <= I < N",
            slot.index, slot.count, slot.source
        ));
    }
    Ok(slot)
}

fn from_env(of: Option<u64>, env: &dyn Fn(&str) -> Option<String>) -> Result<WorkerSlot, String> {
    // A variable that is set but empty counts as unset; Grid Engine sets
    // "undefined" outside array jobs.
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty() && v.trim() != "undefined");
    let num = |k: &str| -> Result<Option<u64>, String> {
        get(k)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("--worker auto: {k}={v:?} is not a non-negative integer"))
            })
            .transpose()
    };
    let need = |k: &str, what: &str| -> Result<u64, String> {
        num(k)?.ok_or_else(|| format!("--worker auto: {k} is set but {what} is not"))
    };
    // The count from the scheduler, checked against --of when both exist.
    let count = |from_env: Option<u64>, var: &str, hint: &str| -> Result<u64, String> {
        match (from_env, of) {
            (Some(n), Some(o)) if n != o => Err(format!(
                "--worker auto: {var} says {n} workers but --of says {o}"
            )),
            (Some(n), _) => Ok(n),
            (None, Some(o)) => Ok(o),
            (None, None) => Err(format!("--worker auto: {hint}; give --of N")),
        }
    };
    let slot = |index: u64, count: u64, source: &str| WorkerSlot {
        index,
        count,
        source: source.into(),
    };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        if id < min || (id - min) % step != 0 {
            return Err(format!(
                "--worker auto: SLURM_ARRAY_TASK_ID={id} is not SLURM_ARRAY_TASK_MIN={min} plus a multiple of SLURM_ARRAY_TASK_STEP={step}; submit the array as --array=0-N"
            ));
        }
        let n = count(
            num("SLURM_ARRAY_TASK_COUNT")?,
            "SLURM_ARRAY_TASK_COUNT",
            "SLURM_ARRAY_TASK_COUNT is not set",
        )?;
        return Ok(slot((id - min) / step, n, "SLURM_ARRAY_TASK_ID"));
    }
    if let Some(i) = num("JOB_COMPLETION_INDEX")? {
        let n = count(
            None,
            "",
            "JOB_COMPLETION_INDEX gives the index but Kubernetes does not give the count (the Job's completions)",
        )?;
        return Ok(slot(i, n, "JOB_COMPLETION_INDEX"));
    }
    if let Some(i) = num("BATCH_TASK_INDEX")? {
        let n = count(
            num("BATCH_TASK_COUNT")?,
            "BATCH_TASK_COUNT",
            "BATCH_TASK_COUNT is not set",
        )?;
        return Ok(slot(i, n, "BATCH_TASK_INDEX"));
    }
    if let Some(i) = num("AWS_BATCH_JOB_ARRAY_INDEX")? {
        let n = count(
            None,
            "",
            "AWS_BATCH_JOB_ARRAY_INDEX gives the index but not the array size",
        )?;
        return Ok(slot(i, n, "AWS_BATCH_JOB_ARRAY_INDEX"));
    }
    if let Some(id) = num("SGE_TASK_ID")? {
        let first = need("SGE_TASK_FIRST", "SGE_TASK_ID")?;
        let step = num("SGE_TASK_STEPSIZE")?.unwrap_or(1).max(1);
        if id < first || (id - first) % step != 0 {
            return Err(format!(
                "--worker auto: SGE_TASK_ID={id} is not SGE_TASK_FIRST={first} plus a multiple of SGE_TASK_STEPSIZE={step}"
            ));
        }
        let from_range = num("SGE_TASK_LAST")?
            .filter(|&last| last >= first)
            .map(|last| (last - first) / step + 1);
        let n = count(from_range, "SGE_TASK_LAST", "SGE_TASK_LAST is not set")?;
        return Ok(slot((id - first) / step, n, "SGE_TASK_ID"));
    }
    if let Some(i) = num("PBS_ARRAY_INDEX")? {
        let n = count(
            None,
            "",
            "PBS_ARRAY_INDEX gives the index but not the array size",
        )?;
        return Ok(slot(i, n, "PBS_ARRAY_INDEX"));
    }
    if let Some(i) = num("LSB_JOBINDEX")?.filter(|&i| i > 0) {
        let n = count(
            None,
            "",
            "LSB_JOBINDEX gives the index but not the array size",
        )?;
        return Ok(slot(i - 1, n, "LSB_JOBINDEX"));
    }
    let vars: Vec<String> = SCHEDULERS
        .iter()
        .map(|(name, var)| format!("{var} ({name})"))
        .collect();
    Err(format!(
        "--worker auto found no job array index in the environment; it reads {}. Outside a job array, give --worker I/N",
        vars.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(spec: &str, of: Option<u64>, vars: &[(&str, &str)]) -> Result<WorkerSlot, String> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_worker(spec, of, &|k| env.get(k).cloned())
    }

    fn ok(spec: &str, of: Option<u64>, vars: &[(&str, &str)]) -> (u64, u64, String) {
        let s = parse(spec, of, vars).unwrap();
        (s.index, s.count, s.source)
    }

    #[test]
    fn by_hand() {
        assert_eq!(ok("3/8", None, &[]), (3, 8, "--worker".into()));
        for bad in ["8/8", "1/0", "x/2", "3", "-1/2"] {
            assert!(parse(bad, None, &[]).is_err(), "{bad}");
        }
        let e = parse("1/2", Some(2), &[]).unwrap_err();
        assert!(e.contains("--of"), "{e}");
    }

    #[test]
    fn slurm_arrays_relative_to_their_first_id_and_step() {
        let v = [
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(ok("auto", None, &v), (2, 3, "SLURM_ARRAY_TASK_ID".into()));
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(ok("auto", None, &stepped).0, 2);
        // --of must agree with the array.
        let e = parse("auto", Some(4), &v).unwrap_err();
        assert!(
            e.contains("SLURM_ARRAY_TASK_COUNT says 3 workers but --of says 4"),
            "{e}"
        );
        assert_eq!(ok("auto", Some(3), &v).0, 2);
        // Ids that are not MIN..MIN+COUNT (a list like --array=1,5,9).
        let list = [
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let e = parse("auto", None, &list).unwrap_err();
        assert!(e.contains("index 8 of 3"), "{e}");
        let e = parse("auto", None, &[("SLURM_ARRAY_TASK_ID", "1")]).unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT is not set"), "{e}");
        let e = parse("auto", None, &[("SLURM_ARRAY_TASK_ID", "one")]).unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_ID=\"one\""), "{e}");
    }

    #[test]
    fn kubernetes_needs_the_count() {
        let v = [("JOB_COMPLETION_INDEX", "2")];
        assert_eq!(
            ok("auto", Some(3), &v),
            (2, 3, "JOB_COMPLETION_INDEX".into())
        );
        let e = parse("auto", None, &v).unwrap_err();
        assert!(e.contains("--of N") && e.contains("completions"), "{e}");
        let e = parse("auto", Some(2), &v).unwrap_err();
        assert!(e.contains("index 2 of 2"), "{e}");
    }

    #[test]
    fn other_schedulers() {
        let gcp = [("BATCH_TASK_INDEX", "1"), ("BATCH_TASK_COUNT", "4")];
        assert_eq!(ok("auto", None, &gcp).0, 1);
        let aws = [("AWS_BATCH_JOB_ARRAY_INDEX", "0")];
        assert_eq!(ok("auto", Some(5), &aws).1, 5);
        let sge = [
            ("SGE_TASK_ID", "5"),
            ("SGE_TASK_FIRST", "1"),
            ("SGE_TASK_LAST", "9"),
            ("SGE_TASK_STEPSIZE", "2"),
        ];
        assert_eq!(ok("auto", None, &sge), (2, 5, "SGE_TASK_ID".into()));
        // Grid Engine outside an array job.
        let e = parse("auto", Some(2), &[("SGE_TASK_ID", "undefined")]).unwrap_err();
        assert!(e.contains("found no job array index"), "{e}");
        assert_eq!(ok("auto", Some(2), &[("PBS_ARRAY_INDEX", "1")]).0, 1);
        assert_eq!(ok("auto", Some(2), &[("LSB_JOBINDEX", "2")]).0, 1);
        let e = parse("auto", None, &[]).unwrap_err();
        for (_, var) in SCHEDULERS {
            assert!(e.contains(var), "{e}");
        }
    }

    #[test]
    fn thieves_take_the_next_share_from_the_top() {
        let w = WorkerSlot {
            index: 1,
            count: 4,
            source: String::new(),
        };
        // Shares: 0 -> {0,4,8}, 1 -> {1,5,9}, 2 -> {2,6,10}, 3 -> {3,7,11}.
        let left: BTreeSet<u64> = [0, 4, 6, 10, 3, 9].into();
        assert_eq!(w.next_steal(&left), Some(10)); // share 2, from the top
        let left: BTreeSet<u64> = [0, 4, 3, 9].into();
        assert_eq!(w.next_steal(&left), Some(3)); // share 3
        let left: BTreeSet<u64> = [0, 4, 9].into();
        assert_eq!(w.next_steal(&left), Some(4)); // share 0 last
        let left: BTreeSet<u64> = [5, 9].into();
        assert_eq!(w.next_steal(&left), None); // its own are not stolen
    }
}
