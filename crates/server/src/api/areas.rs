//! Named areas (CoreScope's `areas` configuration key): a polygon of `[lat, lon]` vertices or
//! a bounding box, and the `area=` filter built from them.
//!
//! A node belongs to an area by its own advertised position (never by where its observers
//! are); an observer by the position of its own node (the node whose key is the observer's id);
//! a packet when it is an advert of a node in the area (other packets do not name their
//! sender in the clear). Nodes without a position, or at (0, 0), belong to no area.
//!
//! The test is SQL, generated from validated numbers (finite, in range, at most
//! [`MAX_VERTICES`] vertices), so any list can filter on it without reading every node into
//! memory or binding thousands of keys. Point-in-polygon is the even-odd rule: the number of
//! edges a ray from the point crosses; the edges are split into latitude bands so each row
//! tests only those at its own latitude (see `band_sum`), and sums are balanced trees so
//! SQLite's expression depth stays logarithmic in the vertex count.
//!
//! `/api/config/areas` lists `{key, label}`, `/api/config/areas/polygons` the geometry too.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::Params;
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Most vertices of one polygon: the SQL test of a 256-vertex area is about 40 kB, prepared
/// in ~5 ms and run over 10,000 nodes in ~10 ms (debug build); 1,000 vertices took 120 ms
/// to prepare.
pub const MAX_VERTICES: usize = 256;
/// Most areas in the configuration.
pub const MAX_AREAS: usize = 200;
/// Longest key or label.
const MAX_TEXT: usize = 100;

/// The shape of an area.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `[lat, lon]` vertices, at least 3 (closed implicitly).
    Polygon(Vec<[f64; 2]>),
    /// `latMin`, `latMax`, `lonMin`, `lonMax`.
    Bbox {
        /// Southern edge.
        lat_min: f64,
        /// Northern edge.
        lat_max: f64,
        /// Western edge.
        lon_min: f64,
        /// Eastern edge.
        lon_max: f64,
    },
}

/// One named area.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    /// The key clients filter by (`?area=BAY`).
    pub key: String,
    /// What the UI shows.
    pub label: String,
    /// Its geometry.
    pub shape: Shape,
}

fn coord(v: &Value, lat: bool, at: &str) -> Result<f64, String> {
    let x = v
        .as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{at} must be a finite number"))?;
    let max = if lat { 90.0 } else { 180.0 };
    if !(-max..=max).contains(&x) {
        return Err(format!("{at} is out of range (±{max})"));
    }
    Ok(x)
}

impl Area {
    /// Reads CoreScope's `areas` object (`{KEY: {label, polygon | latMin…}}`). Keys whose
    /// value is not an object (`"_comment": "..."`) are skipped, as CoreScope does; anything
    /// else malformed is an error naming it.
    pub fn parse_all(v: &Value) -> Result<Vec<Area>, String> {
        let obj = v
            .as_object()
            .ok_or("areas must be an object of KEY: area")?;
        let mut out = Vec::new();
        for (key, a) in obj {
            let Some(a) = a.as_object() else { continue };
            if out.len() >= MAX_AREAS {
                return Err(format!("areas: at most {MAX_AREAS}"));
            }
            let at = format!("areas.{key}");
            if key.is_empty() || key.chars().count() > MAX_TEXT || key.contains(',') {
                return Err(format!(
                    "{at}: a key must be 1-{MAX_TEXT} characters without commas"
                ));
            }
            let label = match a.get("label") {
                None => key.clone(),
                Some(l) => l
                    .as_str()
                    .filter(|l| l.chars().count() <= MAX_TEXT)
                    .ok_or_else(|| format!("{at}.label must be a string of at most {MAX_TEXT}"))?
                    .to_owned(),
            };
            let shape = if let Some(p) = a.get("polygon") {
                let p = p
                    .as_array()
                    .ok_or_else(|| format!("{at}.polygon must be an array of [lat, lon]"))?;
                if p.len() < 3 || p.len() > MAX_VERTICES {
                    return Err(format!(
                        "{at}.polygon must have 3 to {MAX_VERTICES} vertices"
                    ));
                }
                let mut vs = Vec::with_capacity(p.len());
                for (i, pt) in p.iter().enumerate() {
                    let pair = pt
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or_else(|| format!("{at}.polygon[{i}] must be [lat, lon]"))?;
                    let w = format!("{at}.polygon[{i}]");
                    vs.push([coord(&pair[0], true, &w)?, coord(&pair[1], false, &w)?]);
                }
                Shape::Polygon(vs)
            } else {
                let get = |k: &str, lat: bool| -> Result<f64, String> {
                    coord(
                        a.get(k).ok_or_else(|| {
                            format!("{at} needs a polygon or latMin/latMax/lonMin/lonMax")
                        })?,
                        lat,
                        &format!("{at}.{k}"),
                    )
                };
                let (lat_min, lat_max) = (get("latMin", true)?, get("latMax", true)?);
                let (lon_min, lon_max) = (get("lonMin", false)?, get("lonMax", false)?);
                if lat_min > lat_max || lon_min > lon_max {
                    return Err(format!("{at}: a minimum is above its maximum"));
                }
                Shape::Bbox {
                    lat_min,
                    lat_max,
                    lon_min,
                    lon_max,
                }
            };
            out.push(Area {
                key: key.clone(),
                label,
                shape,
            });
        }
        Ok(out)
    }

    /// Whether `(lat, lon)` is inside, by the same rule as [`Area::sql_contains`].
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        if !lat.is_finite() || !lon.is_finite() || (lat == 0.0 && lon == 0.0) {
            return false;
        }
        match &self.shape {
            Shape::Bbox {
                lat_min,
                lat_max,
                lon_min,
                lon_max,
            } => (*lat_min..=*lat_max).contains(&lat) && (*lon_min..=*lon_max).contains(&lon),
            Shape::Polygon(vs) => {
                crossings(vs)
                    .filter(|e| lat >= e.lat_lo && lat < e.lat_hi && lon < e.k * lat + e.c)
                    .count()
                    % 2
                    == 1
            }
        }
    }

    /// An SQL condition: the row's `lat`/`lon` columns lie inside. Numbers are written as
    /// literals (`{:?}`: always with a decimal point or exponent, so SQLite computes in
    /// floating point): they are finite and validated, never text from a request.
    pub fn sql_contains(&self, lat: &str, lon: &str) -> String {
        let located =
            format!("{lat} IS NOT NULL AND {lon} IS NOT NULL AND NOT ({lat} = 0 AND {lon} = 0)");
        match &self.shape {
            Shape::Bbox {
                lat_min,
                lat_max,
                lon_min,
                lon_max,
            } => format!(
                "({located} AND {lat} BETWEEN {lat_min:?} AND {lat_max:?} AND {lon} BETWEEN {lon_min:?} AND {lon_max:?})"
            ),
            Shape::Polygon(vs) => {
                let (mut s, mut n, mut w, mut e) = (90.0f64, -90.0f64, 180.0f64, -180.0f64);
                for v in vs {
                    (s, n) = (s.min(v[0]), n.max(v[0]));
                    (w, e) = (w.min(v[1]), e.max(v[1]));
                }
                let edges: Vec<Crossing> = crossings(vs).collect();
                let refs: Vec<&Crossing> = edges.iter().collect();
                // The bounding box first: SQLite stops at the first false term of an AND.
                format!(
                    "({located} AND {lat} BETWEEN {s:?} AND {n:?} AND {lon} BETWEEN {w:?} AND {e:?} AND {} % 2 = 1)",
                    band_sum(&refs, lat, lon, f64::NEG_INFINITY, f64::INFINITY, 0)
                )
            }
        }
    }

    fn to_json(&self, geometry: bool) -> Value {
        let mut v = json!({"key": self.key, "label": self.label});
        if geometry {
            match &self.shape {
                Shape::Polygon(vs) => v["polygon"] = json!(vs),
                Shape::Bbox {
                    lat_min,
                    lat_max,
                    lon_min,
                    lon_max,
                } => {
                    v["latMin"] = json!(lat_min);
                    v["latMax"] = json!(lat_max);
                    v["lonMin"] = json!(lon_min);
                    v["lonMax"] = json!(lon_max);
                }
            }
        }
        v
    }
}

/// An edge of a polygon as the even-odd rule uses it: a ray going east from `(lat, lon)`
/// crosses it when `lat_lo <= lat < lat_hi` and `lon < k * lat + c` (the edge's longitude at
/// that latitude). The same numbers serve the Rust and the SQL test, so both agree exactly.
struct Crossing {
    lat_lo: f64,
    lat_hi: f64,
    k: f64,
    c: f64,
}

/// The edges of `vs` (closed), without horizontal ones (a ray along a parallel never crosses
/// them) or ones so nearly horizontal that their slope is not a finite number.
fn crossings(vs: &[[f64; 2]]) -> impl Iterator<Item = Crossing> + '_ {
    vs.iter().enumerate().filter_map(move |(i, a)| {
        let b = vs.get((i + 1) % vs.len())?;
        if a[0] == b[0] {
            return None;
        }
        let k = (b[1] - a[1]) / (b[0] - a[0]);
        let c = a[1] - k * a[0];
        (k.is_finite() && c.is_finite()).then(|| Crossing {
            lat_lo: a[0].min(b[0]),
            lat_hi: a[0].max(b[0]),
            k,
            c,
        })
    })
}

/// The number of `edges` a ray from the row's point crosses, as SQL, for points with a
/// latitude in `[lo, hi)`. Testing every edge costs a polygon's vertex count per row (a
/// 1,000-vertex area over 10,000 nodes took 0.7 s); instead the band is split at the median
/// latitude of its edges' ends (`CASE WHEN lat < m THEN … ELSE … END`) and each half tests
/// only the edges overlapping it, so a row tests the few edges at its own latitude. Splitting
/// stops when a half would keep every edge, at 4 edges, or 24 levels deep; an edge that does
/// not overlap a band cannot be crossed by a ray from inside it, so the count is unchanged.
fn band_sum(edges: &[&Crossing], lat: &str, lon: &str, lo: f64, hi: f64, depth: u32) -> String {
    let leaf = |edges: &[&Crossing]| {
        let terms: Vec<String> = edges
            .iter()
            .map(|e| {
                // A comparison is 0 or 1 in SQLite: the term is the crossing itself.
                format!(
                    "({lat} >= {:?} AND {lat} < {:?} AND {lon} < {:?} * {lat} + {:?})",
                    e.lat_lo, e.lat_hi, e.k, e.c
                )
            })
            .collect();
        balanced_sum(&terms)
    };
    if edges.len() <= 4 || depth >= 24 {
        return leaf(edges);
    }
    let mut ends: Vec<f64> = edges
        .iter()
        .flat_map(|e| [e.lat_lo, e.lat_hi])
        .filter(|y| *y > lo && *y < hi)
        .collect();
    ends.sort_by(f64::total_cmp);
    let Some(&m) = ends.get(ends.len() / 2) else {
        return leaf(edges);
    };
    let below: Vec<&Crossing> = edges
        .iter()
        .copied()
        .filter(|e| e.lat_lo < m && e.lat_hi > lo)
        .collect();
    let above: Vec<&Crossing> = edges
        .iter()
        .copied()
        .filter(|e| e.lat_lo < hi && e.lat_hi > m)
        .collect();
    if below.len() == edges.len() || above.len() == edges.len() {
        return leaf(edges);
    }
    format!(
        "(CASE WHEN {lat} < {m:?} THEN {} ELSE {} END)",
        band_sum(&below, lat, lon, lo, m, depth + 1),
        band_sum(&above, lat, lon, m, hi, depth + 1)
    )
}

/// `(a + b) + (c + d)`: depth log₂(n) instead of n (SQLite refuses expressions deeper than
/// 1,000).
fn balanced_sum(terms: &[String]) -> String {
    match terms {
        [] => "0".into(),
        [one] => one.clone(),
        _ => {
            let (l, r) = terms.split_at(terms.len() / 2);
            format!("({} + {})", balanced_sum(l), balanced_sum(r))
        }
    }
}

/// The area named by the `area` parameter: `None` when absent; an unknown name is a 400 (a
/// filter that is silently ignored would answer everything).
pub fn from_params<'a>(p: &Params, areas: &'a [Area]) -> ApiResult<Option<&'a Area>> {
    let Some(key) = p.str("area") else {
        return Ok(None);
    };
    areas
        .iter()
        .find(|a| a.key == key)
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(if areas.is_empty() {
                "area: no areas are configured".into()
            } else {
                format!("area: unknown area {key:?} (see /api/config/areas)")
            })
        })
}

/// An SQL condition on a `public_key` column: the node is located in `area`.
pub fn node_key_in(area: &Area, key_column: &str) -> String {
    format!(
        "{key_column} IN (SELECT public_key FROM nodes WHERE {})",
        area.sql_contains("lat", "lon")
    )
}

/// An SQL condition on a transmission `t`: an advert of a node located in `area` (CoreScope's
/// packet area filter).
pub fn packets_clause(area: &Area) -> String {
    format!(
        "(t.payload_type = 4 AND {})",
        node_key_in(area, "t.from_pubkey")
    )
}

/// `GET /api/config/areas` → `[{key, label}]`, in key order; an area whose label is given
/// empty is left out of this list (CoreScope's way to keep an area filterable but off the
/// UI's pill bar), not out of the polygons.
pub async fn list(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(Value::Array(
        st.ui
            .areas
            .iter()
            .filter(|a| !a.label.is_empty())
            .map(|a| a.to_json(false))
            .collect(),
    ))
}

/// `GET /api/config/areas/polygons` → `[{key, label, polygon | latMin…}]`.
pub async fn polygons(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(Value::Array(
        st.ui.areas.iter().map(|a| a.to_json(true)).collect(),
    ))
}

/// Reads `areas` from a configuration object, if present.
pub fn from_config(obj: &Map<String, Value>) -> Result<Vec<Area>, String> {
    obj.get("areas").map_or(Ok(Vec::new()), Area::parse_all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bay() -> Area {
        Area::parse_all(
            &json!({"_comment": "x", "BAY": {"label": "Bay", "polygon": [
            [37.9, -122.55], [37.9, -121.75], [37.25, -121.75], [37.25, -122.55]]}}),
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn polygons_and_boxes_are_parsed_and_tested() {
        let a = bay();
        assert_eq!(a.label, "Bay");
        assert!(a.contains(37.5, -122.0));
        assert!(!a.contains(38.5, -122.0));
        assert!(!a.contains(0.0, 0.0));
        // A concave polygon (an L): the notch is outside.
        let l =
            Area::parse_all(&json!({"L": {"polygon": [[0,0.5],[0,2],[1,2],[1,1],[2,1],[2,0.5]]}}))
                .unwrap()
                .remove(0);
        assert!(l.contains(0.5, 1.5));
        assert!(l.contains(1.5, 0.7));
        assert!(!l.contains(1.5, 1.5));
        let b =
            Area::parse_all(&json!({"B": {"latMin": 1, "latMax": 2, "lonMin": 3, "lonMax": 4}}))
                .unwrap()
                .remove(0);
        assert!(b.contains(1.5, 3.5) && !b.contains(2.5, 3.5));
    }

    #[test]
    fn hostile_areas_are_refused() {
        for bad in [
            json!([]),
            json!({"A": {"polygon": [[1, 2], [3, 4]]}}),
            json!({"A": {"polygon": [[1, 2], [3, 4], [5]]}}),
            json!({"A": {"polygon": [[1, 2], [3, 4], [95, 0]]}}),
            json!({"A": {"polygon": [[1, 2], [3, 4], ["x", 0]]}}),
            json!({"A": {"latMin": 1}}),
            json!({"A": {"latMin": 2, "latMax": 1, "lonMin": 0, "lonMax": 1}}),
            json!({"A,B": {"latMin": 1, "latMax": 2, "lonMin": 0, "lonMax": 1}}),
            json!({"A": {"label": 5, "latMin": 1, "latMax": 2, "lonMin": 0, "lonMax": 1}}),
        ] {
            assert!(Area::parse_all(&bad).is_err(), "{bad}");
        }
        let many: Vec<Value> = (0..=MAX_VERTICES)
            .map(|i| json!([i as f64 / 100.0, 1]))
            .collect();
        assert!(Area::parse_all(&json!({"A": {"polygon": many}})).is_err());
    }
}
