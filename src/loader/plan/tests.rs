//! The plan's unit tests: ranks, segments, weights, seeds.

mod plan {
    use super::super::*;
    use std::collections::BTreeSet;

    fn units(n: usize, rows: u32, sources: &[&str]) -> Vec<Unit> {
        (0..n)
            .map(|i| Unit {
                shard: i as u64 / 2,
                row_group: i % 2,
                rows: rows - (i % 3 == 0) as u32 * 3,
                source: sources[i % sources.len()].to_owned(),
                est_bytes: 1000,
            })
            .collect()
    }

    fn opts(mixing: Mixing, pad: bool) -> PlanOptions {
        PlanOptions {
            batch_size: 8,
            shuffle_row_groups: 3,
            pad,
            mixing,
            seed: 5,
            epoch: 1,
        }
    }

    fn drain(p: &mut RankPlan, units: &[Unit], batches: u64, b: usize) -> Vec<(u64, u32)> {
        let mut out = vec![];
        for _ in 0..batches * b as u64 {
            if let Some(d) = p.sampler.draw() {
                let u = &units[p.sampler.slices()[d.slice].unit as usize];
                out.push((u.shard * 1000 + u.row_group as u64, d.row));
            }
        }
        out
    }

    #[test]
    fn world_size_changes_neither_repeat_nor_lose_samples() {
        let u = units(23, 20, &["a"]);
        let o = opts(
            Mixing {
                weights: None,
                epoch_size: None,
            },
            true,
        );
        let total: usize = u.iter().map(|x| x.rows as usize).sum();
        let mut seen = vec![];
        // 3 batches on 2 ranks, then 2 on 3 ranks, then the rest on 1.
        for r in 0..2 {
            let mut p = rank_plan(&u, &o, &[], r, 2).unwrap();
            seen.extend(drain(&mut p, &u, 3, 8));
        }
        let past = [Segment {
            world_size: 2,
            batches: 3,
        }];
        for r in 0..3 {
            let mut p = rank_plan(&u, &o, &past, r, 3).unwrap();
            seen.extend(drain(&mut p, &u, 2, 8));
        }
        let past = [
            past[0],
            Segment {
                world_size: 3,
                batches: 2,
            },
        ];
        let mut p = rank_plan(&u, &o, &past, 0, 1).unwrap();
        let b = p.batches;
        seen.extend(drain(&mut p, &u, b, 8));
        let set: BTreeSet<_> = seen.iter().collect();
        assert_eq!(set.len(), seen.len(), "no sample twice");
        assert_eq!(seen.len(), total, "no sample lost");
    }

    #[test]
    fn weights_set_the_share_of_each_source() {
        let mut u = units(40, 20, &["big"]);
        u.truncate(36);
        for x in u.iter_mut().skip(30) {
            x.source = "small".into();
        }
        let mut w = BTreeMap::new();
        w.insert("big".to_owned(), 1.0);
        w.insert("small".to_owned(), 1.0);
        let m = Mixing {
            weights: Some(w),
            epoch_size: Some(600),
        };
        let order = global_order(&u, &m, 1, 0).unwrap();
        let count = |s: &str, o: &[Slice]| -> usize {
            o.iter()
                .filter(|x| u[x.unit as usize].source == s)
                .map(|x| x.len(&u))
                .sum()
        };
        assert_eq!(count("big", &order), 300);
        assert_eq!(count("small", &order), 300);
        // Both sources appear in every fifth of the order.
        let fifth = order.len() / 5;
        for c in order.chunks(fifth) {
            assert!(count("big", c) > 0 && count("small", c) > 0);
        }
        assert!(global_order(
            &u,
            &Mixing {
                weights: Some([("nope".to_owned(), 1.0)].into()),
                epoch_size: None
            },
            1,
            0
        )
        .is_err());
    }

    #[test]
    fn ranks_get_equal_batches_and_plans_are_deterministic() {
        let u = units(17, 30, &["a"]);
        for pad in [false, true] {
            let o = opts(
                Mixing {
                    weights: None,
                    epoch_size: None,
                },
                pad,
            );
            let plans: Vec<_> = (0..4)
                .map(|r| rank_plan(&u, &o, &[], r, 4).unwrap())
                .collect();
            assert!(plans
                .iter()
                .all(|p| p.batches == plans[0].batches && p.batches > 0));
            let a = drain(&mut rank_plan(&u, &o, &[], 1, 4).unwrap(), &u, 3, 8);
            let b = drain(&mut rank_plan(&u, &o, &[], 1, 4).unwrap(), &u, 3, 8);
            assert_eq!(a, b);
            let o2 = PlanOptions {
                epoch: 2,
                ..o.clone()
            };
            assert_ne!(
                a,
                drain(&mut rank_plan(&u, &o2, &[], 1, 4).unwrap(), &u, 3, 8)
            );
        }
    }
}

/// The heap in [`split`] gives each slice to the same rank as a scan for the
/// rank holding the fewest samples (lowest on ties) does.
mod split_tests {
    use super::super::*;

    #[test]
    fn split_matches_the_fewest_samples_rule() {
        let mut rng = Rng::new(&[3]);
        let units: Vec<Unit> = (0..200)
            .map(|i| Unit {
                shard: i,
                row_group: 0,
                rows: rng.below(40) as u32,
                source: String::new(),
                est_bytes: 0,
            })
            .collect();
        let slices: Vec<Slice> = (0..200)
            .map(|u| Slice {
                unit: u,
                rows: Rows::All,
            })
            .collect();
        for world in [1, 2, 3, 7, 64, 500] {
            let mut want = vec![Vec::new(); world];
            let mut held = vec![0usize; world];
            for s in &slices {
                let r = (0..world).min_by_key(|&r| (held[r], r)).unwrap();
                held[r] += s.len(&units);
                want[r].push(s.clone());
            }
            assert_eq!(split(&slices, &units, world), want, "world {world}");
        }
        assert!(split(&slices, &units, 0).is_empty());
    }

    #[test]
    fn hostile_segments_are_refused_by_field() {
        let seg = |world_size, batches| Segment {
            world_size,
            batches,
        };
        assert!(check_segments(&[seg(1, 5), seg(MAX_WORLD_SIZE, 0)]).is_ok());
        for (past, field) in [
            (vec![seg(0, 0)], "segments[0].world_size is 0"),
            (
                vec![seg(2, 1), seg(usize::MAX, 0)],
                "segments[1].world_size",
            ),
            (vec![seg(MAX_WORLD_SIZE + 1, 0)], "segments[0].world_size"),
            (vec![seg(1, 0); MAX_SEGMENTS + 1], "segments"),
        ] {
            let e = check_segments(&past).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn row_groups_claiming_billions_of_rows_are_refused() {
        let o = PlanOptions {
            batch_size: 4,
            shuffle_row_groups: 2,
            pad: true,
            mixing: Mixing {
                weights: None,
                epoch_size: None,
            },
            seed: 1,
            epoch: 0,
        };
        let unit = |shard, rows| Unit {
            shard,
            row_group: 0,
            rows,
            source: "a".into(),
            est_bytes: 0,
        };
        let units = [unit(0, 10), unit(7, u32::MAX)];
        let e = rank_plan(&units, &o, &[], 0, 1).unwrap_err();
        assert!(e.contains("image shard 7 row group 0"), "{e}");
        assert!(rank_plan(&units[..1], &o, &[], 0, 1).is_ok());
    }
}

/// Issue 14, item 2: the unit order and the shuffle buffer each depend on
/// the seed (and the epoch), not only on each other.
mod seed_tests {
    use super::super::*;

    fn units(n: usize, rows: u32) -> Vec<Unit> {
        (0..n)
            .map(|i| Unit {
                shard: i as u64,
                row_group: 0,
                rows,
                source: "a".into(),
                est_bytes: 1000,
            })
            .collect()
    }

    fn plain() -> Mixing {
        Mixing {
            weights: None,
            epoch_size: None,
        }
    }

    fn order(u: &[Unit], m: &Mixing, seed: u64, epoch: u64) -> Vec<(u32, usize)> {
        global_order(u, m, seed, epoch)
            .unwrap()
            .iter()
            .map(|s| (s.unit, s.len(u)))
            .collect()
    }

    fn opts(seed: u64, epoch: u64, k: usize) -> PlanOptions {
        PlanOptions {
            batch_size: 4,
            shuffle_row_groups: k,
            pad: true,
            mixing: plain(),
            seed,
            epoch,
        }
    }

    /// Every draw of rank 0 as (unit, row).
    fn draws(u: &[Unit], o: &PlanOptions) -> Vec<(u32, u32)> {
        let mut p = rank_plan(u, o, &[], 0, 1).unwrap();
        let mut out = vec![];
        while let Some(d) = p.sampler.draw() {
            out.push((p.sampler.slices()[d.slice].unit, d.row));
        }
        out
    }

    #[test]
    fn the_unit_order_depends_on_the_seed() {
        let u = units(24, 5);
        let m = plain();
        assert_eq!(order(&u, &m, 1, 0), order(&u, &m, 1, 0), "deterministic");
        for (a, b) in [(1, 2), (2, 3), (0, 1)] {
            assert_ne!(
                order(&u, &m, a, 0),
                order(&u, &m, b, 0),
                "seeds {a} and {b} give the same unit order: the seed is ignored"
            );
        }
        assert_ne!(order(&u, &m, 1, 0), order(&u, &m, 1, 1), "epoch ignored");
        // With weights too (the per-source passes and the cut of the last unit).
        let w = Mixing {
            weights: Some([("a".to_owned(), 1.0)].into()),
            epoch_size: Some(57),
        };
        assert_ne!(
            order(&u, &w, 1, 0),
            order(&u, &w, 2, 0),
            "weighted: the seed is ignored"
        );
        // Through the plan: with one open unit at a time (k = 1), the units are
        // visited in plan order.
        let visited = |seed| {
            let mut v: Vec<u32> = draws(&u, &opts(seed, 0, 1))
                .into_iter()
                .map(|d| d.0)
                .collect();
            v.dedup();
            v
        };
        assert_eq!(visited(1).len(), 24);
        assert_ne!(visited(1), visited(2), "rank plan: the seed is ignored");
    }

    #[test]
    fn the_shuffle_buffer_depends_on_the_seed() {
        // One unit: the global order is the same for every seed, so any
        // difference comes from the shuffle buffer's generator.
        let one = units(1, 64);
        let rows = |d: Vec<(u32, u32)>| d.into_iter().map(|x| x.1).collect::<Vec<_>>();
        let a = rows(draws(&one, &opts(1, 0, 2)));
        assert_eq!(a.len(), 64);
        assert_ne!(a, (0..64).collect::<Vec<_>>(), "rows are not shuffled");
        assert_eq!(a, rows(draws(&one, &opts(1, 0, 2))), "deterministic");
        for (s, t) in [(1, 2), (2, 3), (0, 1)] {
            assert_ne!(
                rows(draws(&one, &opts(s, 0, 2))),
                rows(draws(&one, &opts(t, 0, 2))),
                "seeds {s} and {t} draw the same rows: the shuffle buffer ignores the seed"
            );
        }
        assert_ne!(
            a,
            rows(draws(&one, &opts(1, 1, 2))),
            "the shuffle buffer ignores the epoch"
        );
        // The sampler itself: same slices, other generators, other orders; and
        // with K open slices, draws interleave them.
        let u = units(4, 16);
        let slices: Vec<Slice> = (0..4)
            .map(|i| Slice {
                unit: i,
                rows: Rows::All,
            })
            .collect();
        let run = |seed: u64| {
            let mut s = Sampler::new(slices.clone(), &u, 2, Rng::new(&[seed]));
            std::iter::from_fn(move || s.draw().map(|d| (d.slice, d.row))).collect::<Vec<_>>()
        };
        assert_eq!(run(1).len(), 64);
        assert_ne!(run(1), run(2));
        let first: Vec<usize> = run(1)[..16].iter().map(|d| d.0).collect();
        assert!(
            first.contains(&0) && first.contains(&1),
            "two open slices are drawn from together: {first:?}"
        );
    }
}
