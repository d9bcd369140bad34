//! The two callers of the kernel agree: events pushed online in random batches and
//! orders, read at `T`, give the bits the backfill's sweep computes at `T` from the same
//! history, and both equal a direct fold over exactly the events the documented rule
//! counts. A planted skew (a window end that includes `T`) is caught.

mod common;

use common::Rng;

use skewless_aggregate::window::{arrived, is_late};
use skewless_aggregate::{
    Aggregate, Event, EventTime, Function, Input, Scalar, Spec, Timeline, Window, sweep,
};
use skewless_core::DType;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const LATENESS: i64 = HOUR;

/// Every function over every dtype it takes, with 1 h, 6 h and 24 h windows, 5 min hops.
fn spec() -> Spec {
    let mut aggregates = vec![(
        Aggregate {
            function: Function::Count,
            input: None,
        },
        HOUR,
    )];
    let mut k = 0;
    for &(_, function) in Function::NAMES.iter() {
        for &dtype in function.accepts() {
            let window = [HOUR, 6 * HOUR, 24 * HOUR][k % 3];
            k += 1;
            aggregates.push((
                Aggregate {
                    function,
                    input: Some(dtype),
                },
                window,
            ));
        }
    }
    // Every aggregate reads a value of its own (the first, a count, may read a null).
    let inputs = (0..aggregates.len()).map(Some).collect();
    Spec {
        hop: 5 * MINUTE,
        aggregates,
        inputs,
    }
}

fn value(rng: &mut Rng, dtype: Option<DType>) -> Option<Scalar> {
    const STRINGS: [&str; 5] = ["", "café", "日本", "🦀", "x"];
    if rng.below(12) == 0 {
        return None;
    }
    Some(match dtype {
        None => Scalar::Int(1),
        Some(DType::Int64) => Scalar::Int(rng.below(2000) as i64 - 1000),
        Some(DType::Float64) => Scalar::Float(match rng.below(10) {
            0 => f64::from_bits(skewless_core::CANONICAL_NAN_F64),
            1 => -0.0,
            2 => 1e300,
            3 => 1e-300,
            4 => 5e-324,
            _ => rng.below(100_000) as f64 / 100.0,
        }),
        Some(_) => Scalar::Str(STRINGS[rng.below(5) as usize].into()),
    })
}

/// Events over 3 days: ties on time, arrival up to 75 min after (some too late).
fn history(rng: &mut Rng, spec: &Spec, n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| {
            let event =
                (rng.below(72 * 60) as i64) * MINUTE / if rng.below(3) == 0 { 1 } else { 7 };
            let created = event + rng.below(75) as i64 * MINUTE + rng.below(1000) as i64;
            let values = spec
                .aggregates
                .iter()
                .map(|(a, _)| value(rng, a.input))
                .collect();
            Event {
                at: EventTime { event, created },
                values,
            }
        })
        .collect()
}

/// The server: events arrive in batches in arrival order, shuffled within a batch, each
/// batch sealing and expiring by its latest arrival; late events are refused.
fn online(rng: &mut Rng, spec: &Spec, events: &[Event], t: i64) -> Vec<Option<Scalar>> {
    let mut arriving = events.to_vec();
    arriving.sort_by_key(|e| e.at.created);
    let mut timeline = Timeline::default();
    let mut rest = &arriving[..];
    while !rest.is_empty() {
        let take = 1 + rng.below(rest.len().min(40) as u64) as usize;
        let mut batch = rest[..take].to_vec();
        rest = &rest[take..];
        let now = batch.iter().map(|e| e.at.created).max().unwrap();
        rng.shuffle(&mut batch);
        for e in batch {
            if !is_late(e.at.event, e.at.created, LATENESS) {
                timeline.insert(spec, e);
            }
        }
        timeline.seal(spec, now - LATENESS);
        timeline.expire(spec, now);
    }
    timeline
        .read(spec, t, LATENESS)
        .expect("a read at or after the last arrival")
}

/// The documented rule, folded directly (`inclusive_end` plants a skew).
fn direct(spec: &Spec, events: &[Event], t: i64, inclusive_end: bool) -> Vec<Option<Scalar>> {
    spec.aggregates
        .iter()
        .enumerate()
        .map(|(i, (aggregate, length))| {
            let window = Window {
                length: *length,
                hop: spec.hop,
            };
            let mut state = aggregate.init();
            for e in events {
                let (ts, created) = (e.at.event, e.at.created);
                let inside = window.start(t) <= ts && (ts < t || (inclusive_end && ts == t));
                if inside && arrived(t, ts, created, Some(LATENESS)) {
                    let v = match &e.values[i] {
                        None => Input::Null,
                        Some(Scalar::Int(v)) => Input::Int(*v),
                        Some(Scalar::Float(v)) => Input::Float(*v),
                        Some(Scalar::Str(v)) => Input::Str(v),
                    };
                    aggregate.update(&mut state, v, e.at);
                }
            }
            aggregate.finalize(&state).unwrap()
        })
        .collect()
}

fn same(a: &[Option<Scalar>], b: &[Option<Scalar>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(Scalar::Float(x)), Some(Scalar::Float(y))) => x.to_bits() == y.to_bits(),
            _ => x == y,
        })
}

#[test]
fn served_aggregates_equal_the_backfill_bit_for_bit_in_any_push_order() {
    let spec = spec();
    let mut rng = Rng(15);
    let mut caught = 0;
    for trial in 0..40 {
        let n = 50 + rng.below(400) as usize;
        let mut events = history(&mut rng, &spec, n);
        let last = events.iter().map(|e| e.at.created).max().unwrap();
        let t = last + rng.below(3) as i64 * HOUR + rng.below(2) as i64;
        // An event exactly at T (arrived before it), for the planted skew to show.
        let mut at_t = history(&mut rng, &spec, 1).remove(0);
        at_t.at = EventTime {
            event: t,
            created: t - 1,
        };
        events.push(at_t);
        let truth = direct(&spec, &events, t, false);
        let served = online(&mut rng, &spec, &events, t);
        let again = online(&mut rng, &spec, &events, t);
        let trained = sweep(&spec, events.clone(), &[t], Some(LATENESS))
            .unwrap()
            .remove(0);
        assert!(
            same(&served, &truth),
            "trial {trial}: served {served:?}\nrule {truth:?}"
        );
        assert!(
            same(&again, &served),
            "trial {trial}: another push order changed the bits"
        );
        assert!(
            same(&trained, &truth),
            "trial {trial}: backfill {trained:?}\nrule {truth:?}"
        );
        // Test of the test: a window end that includes T online would be seen.
        if !same(&direct(&spec, &events, t, true), &served) {
            caught += 1;
        }
    }
    assert_eq!(caught, 40, "the planted skew went unseen");
}

/// The sweep answers many rows at once, in any row order, as each would alone.
#[test]
fn the_sweep_answers_every_row_as_of_its_own_time() {
    let spec = spec();
    let mut rng = Rng(16);
    let events = history(&mut rng, &spec, 600);
    let rows: Vec<i64> = (0..200)
        .map(|_| rng.below(80 * 60) as i64 * MINUTE + rng.below(3) as i64)
        .collect();
    let all = sweep(&spec, events.clone(), &rows, Some(LATENESS)).unwrap();
    for (r, &t) in rows.iter().enumerate() {
        assert!(
            same(&all[r], &direct(&spec, &events, t, false)),
            "row {r} at {t}"
        );
    }
}

#[test]
fn a_read_before_the_folded_tiles_is_refused_not_guessed() {
    let spec = Spec {
        hop: 5 * MINUTE,
        aggregates: vec![(
            Aggregate {
                function: Function::Count,
                input: None,
            },
            HOUR,
        )],
        inputs: vec![None],
    };
    let mut timeline = Timeline::default();
    let e = Event {
        at: EventTime {
            event: 10 * HOUR,
            created: 10 * HOUR,
        },
        values: vec![Some(Scalar::Int(1))].into(),
    };
    timeline.insert(&spec, e);
    timeline.seal(&spec, 12 * HOUR - LATENESS);
    assert_eq!(
        timeline.read(&spec, 12 * HOUR, LATENESS).unwrap(),
        vec![Some(Scalar::Int(0))]
    );
    let err = timeline
        .read(&spec, 10 * HOUR + MINUTE, LATENESS)
        .unwrap_err();
    assert!(
        err.to_string().contains("use a backfill for earlier times"),
        "{err}"
    );
    assert_eq!(timeline.tiles(), 1);
    timeline.expire(&spec, 12 * HOUR);
    assert_eq!(timeline.tiles(), 0, "a tile no window reaches is dropped");
}

/// A store that keeps timelines as bytes (the Redis store) decodes, inserts, seals and
/// encodes again at every push: what it serves is the rule's bits, as in memory.
#[test]
fn a_timeline_stored_as_bytes_between_pushes_serves_the_same_bits() {
    let spec = spec();
    let mut rng = Rng(20);
    for trial in 0..20 {
        let n = 50 + rng.below(300) as usize;
        let mut events = history(&mut rng, &spec, n);
        events.sort_by_key(|e| e.at.created);
        let last = events.last().unwrap().at.created;
        let t = last + rng.below(2) as i64 * HOUR + 1;
        let mut stored = Vec::new();
        Timeline::default().encode(&spec, &mut stored);
        let mut rest = &events[..];
        while !rest.is_empty() {
            let take = 1 + rng.below(rest.len().min(30) as u64) as usize;
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            let now = batch.last().unwrap().at.created;
            let mut timeline = Timeline::decode(&spec, &stored).unwrap();
            for e in batch {
                if !is_late(e.at.event, e.at.created, LATENESS) {
                    timeline.insert(&spec, e.clone());
                }
            }
            timeline.seal(&spec, now - LATENESS);
            timeline.expire(&spec, timeline.earliest(LATENESS));
            stored.clear();
            timeline.encode(&spec, &mut stored);
            // The form is canonical: decoding and encoding again gives the same bytes.
            let mut again = Vec::new();
            Timeline::decode(&spec, &stored)
                .unwrap()
                .encode(&spec, &mut again);
            assert_eq!(again, stored, "trial {trial}: the form is not canonical");
        }
        let served = Timeline::decode(&spec, &stored)
            .unwrap()
            .read(&spec, t, LATENESS)
            .unwrap();
        let truth = direct(&spec, &events, t, false);
        assert!(
            same(&served, &truth),
            "trial {trial}: served {served:?}\nrule {truth:?}"
        );
    }
}

/// Bytes that are not a timeline of the view give an error, never a panic or a value
/// read as if stored: every cut is refused, flipped bytes decode to an error or to a
/// timeline that reads without panicking, and another view's timeline is refused.
#[test]
fn damaged_or_foreign_timeline_bytes_are_refused() {
    let spec = spec();
    let mut rng = Rng(21);
    let mut events = history(&mut rng, &spec, 120);
    events.sort_by_key(|e| e.at.created);
    let now = events.last().unwrap().at.created;
    let mut timeline = Timeline::default();
    for e in events {
        if !is_late(e.at.event, e.at.created, LATENESS) {
            timeline.insert(&spec, e);
        }
    }
    timeline.seal(&spec, now - 3 * HOUR);
    let mut bytes = Vec::new();
    timeline.encode(&spec, &mut bytes);
    for cut in 0..bytes.len() {
        assert!(
            Timeline::decode(&spec, &bytes[..cut]).is_err(),
            "a cut at byte {cut} of {} decoded",
            bytes.len()
        );
    }
    let mut decoded = 0;
    for _ in 0..1500 {
        let mut damaged = bytes.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(damaged.len() as u64) as usize;
            damaged[at] ^= 1 << rng.below(8);
        }
        if let Ok(mut t) = Timeline::decode(&spec, &damaged) {
            decoded += 1;
            for at in [now, now + HOUR, now + 30 * HOUR] {
                let _ = t.read(&spec, at, LATENESS);
            }
        }
    }
    assert!(
        decoded > 0,
        "no flipped value decoded: the test reads nothing"
    );
    let mut other = spec.clone();
    other.aggregates.truncate(3);
    other.inputs.truncate(3);
    assert!(Timeline::decode(&other, &bytes).is_err());
}
