//! The writer's side of the neighbor-graph handoff: read the reader's graph snapshot
//! (`handoff::graph`) and persist it in `neighbor_edges`, so that a restarted reader serves
//! the last graph at once. Runs with the capability snapshot, on the writer thread. A missing
//! file is a silent no-op, a bad one a counter and a rate-limited log line, an already applied
//! generation nothing at all.

use std::path::Path;

use store::{NeighborEdge, Writer};

use crate::stats::Stats;

/// Applies the graph snapshot under `data_dir` if it is newer than `last_generation`.
/// Returns the number of edges stored, or `None` when nothing was applied.
pub fn apply(
    writer: &mut Writer,
    data_dir: &Path,
    last_generation: &mut u64,
    stats: &Stats,
) -> Option<usize> {
    let path = handoff::graph_path(data_dir);
    let snapshot = match handoff::read_graph(&path) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            stats.incr("graph.bad_snapshot");
            if stats.should_log("graph.bad_snapshot").is_some() {
                tracing::warn!("neighbor-graph snapshot {} ignored: {e}", path.display());
            }
            return None;
        }
    };
    if snapshot.generation <= *last_generation {
        return None;
    }
    stats.add("graph.edges_skipped", snapshot.skipped);
    let edges: Vec<NeighborEdge> = snapshot
        .edges
        .into_iter()
        .map(|e| NeighborEdge {
            a: e.a,
            b: e.b,
            count: e.count,
            weight: e.weight,
            last_seen: e.last_seen,
            snr_sum: e.snr_sum,
            snr_count: e.snr_count,
            observers: e.observers,
            observer_count: e.observer_count,
        })
        .collect();
    match writer.replace_neighbor_edges(&edges) {
        Ok(n) => {
            *last_generation = snapshot.generation;
            stats.incr("graph.applied");
            Some(n)
        }
        Err(e) => {
            stats.incr("graph.apply_errors");
            if stats.should_log("graph.apply_errors").is_some() {
                tracing::warn!("neighbor graph not persisted: {e}");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff::{GraphEdge, GraphPublisher};

    fn edge(a: char, b: char, count: u32) -> GraphEdge {
        GraphEdge {
            a: a.to_string().repeat(64),
            b: b.to_string().repeat(64),
            count,
            weight: f64::from(count) * 0.9,
            last_seen: 1_000,
            snr_sum: f64::from(count) * 2.5,
            snr_count: count,
            observers: vec!["obs \"1\"".into(), "obs-2".into()],
            observer_count: 3,
        }
    }

    fn stored(db: &Path) -> Vec<(String, String, u32)> {
        let r = store::Reader::open(db).unwrap();
        let mut s = r
            .conn()
            .prepare("SELECT a, b, count FROM neighbor_edges ORDER BY a, b")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_published_graph_is_persisted_once_and_an_empty_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("meshlens.db");
        let mut w = Writer::open(&db, 0).unwrap();
        let stats = Stats::default();
        let mut last = 0;
        let p = GraphPublisher::new(dir.path());
        assert_eq!(
            apply(&mut w, dir.path(), &mut last, &stats),
            None,
            "no file yet"
        );
        p.publish(&[edge('b', 'a', 3), edge('c', 'd', 1)]).unwrap();
        assert_eq!(apply(&mut w, dir.path(), &mut last, &stats), Some(2));
        assert_eq!(
            apply(&mut w, dir.path(), &mut last, &stats),
            None,
            "same generation"
        );
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(
            stored(&db)[0],
            (a.clone(), b.clone(), 3),
            "ends ordered a < b"
        );
        p.publish(&[edge('a', 'b', 5)]).unwrap();
        assert_eq!(apply(&mut w, dir.path(), &mut last, &stats), Some(1));
        assert_eq!(
            stored(&db),
            vec![(a.clone(), b.clone(), 5)],
            "replaced wholesale"
        );
        let r = store::Reader::open(&db).unwrap();
        let extra: (f64, u32, String, u32) = r
            .conn()
            .query_row(
                "SELECT snr_sum, snr_count, observers, observer_count FROM neighbor_edges",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            extra,
            (12.5, 5, r#"["obs \"1\"","obs-2"]"#.to_owned(), 3),
            "SNR and observers persisted, ids as a JSON array"
        );
        p.publish(&[]).unwrap();
        apply(&mut w, dir.path(), &mut last, &stats);
        assert_eq!(stored(&db), vec![(a, b, 5)], "an empty graph says nothing");
        std::fs::write(handoff::graph_path(dir.path()), "{junk").unwrap();
        assert_eq!(apply(&mut w, dir.path(), &mut last, &stats), None);
        assert_eq!(stats.get("graph.bad_snapshot"), 1);
    }
}
