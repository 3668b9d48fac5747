//! The geo filter: the area an operator's mesh covers, as CoreScope configures it
//! (`geo_filter: {"polygon": [[lat, lon], …], "bufferKm": n}`, or the older bounding box
//! `latMin`/`latMax`/`lonMin`/`lonMax`). A node whose advertised position lies outside is
//! "foreign": heard through a bridge or a leak, not part of this mesh.
//!
//! Pure geometry, no I/O: the writer uses it when it stores a setting, the reader to preview
//! which nodes a prune would remove. Every number comes from a config file or an HTTP body,
//! so [`GeoFilter::from_json`] validates everything before a filter exists.

use serde_json::{Value, json};

/// The most vertices a polygon may have (CoreScope's limit too).
pub const MAX_POLYGON_POINTS: usize = 1000;
/// The largest buffer around the polygon, in km (half the Earth's circumference).
pub const MAX_BUFFER_KM: f64 = 20_000.0;

/// Where the filter draws its line.
#[derive(Debug, Clone, PartialEq)]
pub enum Area {
    /// A closed polygon of `(lat, lon)` vertices (3 to [`MAX_POLYGON_POINTS`]), with a
    /// buffer: a point within `buffer_km` of an edge still passes.
    Polygon {
        /// Vertices in order; the last connects back to the first.
        points: Vec<(f64, f64)>,
        /// Tolerance outside the edges, km, in `[0, MAX_BUFFER_KM]`.
        buffer_km: f64,
    },
    /// The legacy bounding box, inclusive.
    Bounds {
        /// South edge.
        lat_min: f64,
        /// North edge.
        lat_max: f64,
        /// West edge.
        lon_min: f64,
        /// East edge.
        lon_max: f64,
    },
}

/// A validated geo filter.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoFilter {
    /// Its shape.
    pub area: Area,
}

fn coordinate(v: &Value, what: &str, limit: f64) -> Result<f64, String> {
    let x = v
        .as_f64()
        .ok_or_else(|| format!("{what} must be a number"))?;
    if !x.is_finite() || x.abs() > limit {
        return Err(format!(
            "{what} must be a finite number in [-{limit}, {limit}]"
        ));
    }
    Ok(x)
}

impl GeoFilter {
    /// Reads CoreScope's `geo_filter` object. `Ok(None)` is "no filter" (null, an empty
    /// object, an empty polygon); anything malformed is an error saying what is wrong.
    pub fn from_json(v: &Value) -> Result<Option<GeoFilter>, String> {
        let obj = match v {
            Value::Null => return Ok(None),
            Value::Object(o) => o,
            _ => return Err("geo_filter must be an object".into()),
        };
        let buffer_km = match obj.get("bufferKm") {
            None | Some(Value::Null) => 0.0,
            Some(b) => {
                let b = b
                    .as_f64()
                    .ok_or_else(|| "bufferKm must be a number".to_string())?;
                if !b.is_finite() || !(0.0..=MAX_BUFFER_KM).contains(&b) {
                    return Err(format!(
                        "bufferKm must be a finite number in [0, {MAX_BUFFER_KM}]"
                    ));
                }
                b
            }
        };
        match obj.get("polygon") {
            None | Some(Value::Null) => {}
            Some(Value::Array(pts)) if pts.is_empty() => {}
            Some(Value::Array(pts)) => {
                if pts.len() < 3 {
                    return Err("polygon must have at least 3 points".into());
                }
                if pts.len() > MAX_POLYGON_POINTS {
                    return Err(format!(
                        "polygon must have at most {MAX_POLYGON_POINTS} points"
                    ));
                }
                let mut points = Vec::with_capacity(pts.len());
                for (i, p) in pts.iter().enumerate() {
                    let pair = p
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or_else(|| format!("polygon[{i}] must be [lat, lon]"))?;
                    let lat = coordinate(&pair[0], &format!("polygon[{i}] latitude"), 90.0)?;
                    let lon = coordinate(&pair[1], &format!("polygon[{i}] longitude"), 180.0)?;
                    points.push((lat, lon));
                }
                return Ok(Some(GeoFilter {
                    area: Area::Polygon { points, buffer_km },
                }));
            }
            Some(_) => return Err("polygon must be an array of [lat, lon] pairs".into()),
        }
        let bound = |k: &str, limit: f64| -> Result<Option<f64>, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => coordinate(v, k, limit).map(Some),
            }
        };
        match (
            bound("latMin", 90.0)?,
            bound("latMax", 90.0)?,
            bound("lonMin", 180.0)?,
            bound("lonMax", 180.0)?,
        ) {
            (Some(lat_min), Some(lat_max), Some(lon_min), Some(lon_max)) => {
                if lat_min > lat_max || lon_min > lon_max {
                    return Err("latMin/lonMin must not exceed latMax/lonMax".into());
                }
                Ok(Some(GeoFilter {
                    area: Area::Bounds {
                        lat_min,
                        lat_max,
                        lon_min,
                        lon_max,
                    },
                }))
            }
            (None, None, None, None) => Ok(None),
            _ => Err("a bounding box needs all of latMin, latMax, lonMin and lonMax".into()),
        }
    }

    /// The filter as CoreScope's `geo_filter` object.
    pub fn to_json(&self) -> Value {
        match &self.area {
            Area::Polygon { points, buffer_km } => json!({
                "polygon": points.iter().map(|&(a, b)| json!([a, b])).collect::<Vec<_>>(),
                "bufferKm": buffer_km,
            }),
            Area::Bounds {
                lat_min,
                lat_max,
                lon_min,
                lon_max,
            } => json!({
                "latMin": lat_min, "latMax": lat_max, "lonMin": lon_min, "lonMax": lon_max,
            }),
        }
    }

    /// Whether a node at `(lat, lon)` belongs to the mesh. `(0, 0)` is the firmware's "no
    /// position" and always passes, as do non-finite coordinates (no position either).
    pub fn passes(&self, lat: f64, lon: f64) -> bool {
        if !lat.is_finite() || !lon.is_finite() || (lat == 0.0 && lon == 0.0) {
            return true;
        }
        match &self.area {
            Area::Polygon { points, buffer_km } => {
                if point_in_polygon(lat, lon, points) {
                    return true;
                }
                *buffer_km > 0.0
                    && (0..points.len()).any(|i| {
                        let j = (i + 1) % points.len();
                        distance_to_segment_km(lat, lon, points[i], points[j]) <= *buffer_km
                    })
            }
            Area::Bounds {
                lat_min,
                lat_max,
                lon_min,
                lon_max,
            } => (*lat_min..=*lat_max).contains(&lat) && (*lon_min..=*lon_max).contains(&lon),
        }
    }
}

/// Even-odd ray casting: whether `(lat, lon)` is inside the polygon.
pub fn point_in_polygon(lat: f64, lon: f64, points: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let mut prev = match points.last() {
        Some(&p) => p,
        None => return false,
    };
    for &cur in points {
        let ((lat_i, lon_i), (lat_j, lon_j)) = (cur, prev);
        if (lat_i > lat) != (lat_j > lat) {
            let crossing = lon_i + (lon_j - lon_i) * (lat - lat_i) / (lat_j - lat_i);
            if lon < crossing {
                inside = !inside;
            }
        }
        prev = cur;
    }
    inside
}

/// Kilometres per degree of latitude (mean Earth radius 6,371 km).
const KM_PER_DEGREE: f64 = 111.195;

/// Distance in km from `(lat, lon)` to the segment `a`–`b`, on a local flat projection
/// (accurate to well under 1 % at the scale of a mesh's buffer, tens of km).
pub fn distance_to_segment_km(lat: f64, lon: f64, a: (f64, f64), b: (f64, f64)) -> f64 {
    let cos_lat = ((a.0 + b.0) / 2.0).to_radians().cos();
    let project = |p: (f64, f64)| {
        (
            (p.1 - lon) * KM_PER_DEGREE * cos_lat,
            (p.0 - lat) * KM_PER_DEGREE,
        )
    };
    let (ax, ay) = project(a);
    let (bx, by) = project(b);
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    };
    let (px, py) = (ax + t * dx, ay + t * dy);
    (px * px + py * py).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A square around Seattle, roughly 0.2° (≈ 22 km north–south) a side.
    fn square(buffer: f64) -> GeoFilter {
        GeoFilter::from_json(&json!({
            "polygon": [[47.5, -122.4], [47.7, -122.4], [47.7, -122.2], [47.5, -122.2]],
            "bufferKm": buffer,
        }))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn inside_outside_and_the_buffer() {
        let f = square(0.0);
        assert!(f.passes(47.6, -122.3));
        assert!(!f.passes(45.5, -122.6), "Portland is outside");
        // 0.05° north of the north edge is 5.6 km.
        assert!(!f.passes(47.75, -122.3));
        assert!(square(6.0).passes(47.75, -122.3));
        assert!(!square(5.0).passes(47.75, -122.3));
    }

    #[test]
    fn no_position_always_passes() {
        let f = square(0.0);
        assert!(f.passes(0.0, 0.0));
        assert!(f.passes(f64::NAN, 1.0));
    }

    #[test]
    fn bounding_box() {
        let f = GeoFilter::from_json(
            &json!({"latMin": 47.0, "latMax": 48.0, "lonMin": -123.0, "lonMax": -122.0}),
        )
        .unwrap()
        .unwrap();
        assert!(f.passes(47.5, -122.5));
        assert!(!f.passes(46.9, -122.5));
        assert_eq!(GeoFilter::from_json(&f.to_json()).unwrap().unwrap(), f);
    }

    #[test]
    fn empty_means_no_filter() {
        for v in [json!(null), json!({}), json!({"polygon": []})] {
            assert_eq!(GeoFilter::from_json(&v).unwrap(), None, "{v}");
        }
    }

    #[test]
    fn hostile_input_is_an_error() {
        let many: Vec<Value> = (0..=MAX_POLYGON_POINTS)
            .map(|i| json!([i as f64 / 100.0, 1.0]))
            .collect();
        for v in [
            json!("polygon"),
            json!({"polygon": [[1, 2], [3, 4]]}),
            json!({"polygon": [[1, 2], [3, 4], [5]]}),
            json!({"polygon": [[1, 2], [3, 4], [91, 5]]}),
            json!({"polygon": [[1, 2], [3, 4], [5, 181]]}),
            json!({"polygon": [[1, 2], [3, 4], ["5", 6]]}),
            json!({"polygon": many}),
            json!({"polygon": [[1, 2], [3, 4], [5, 6]], "bufferKm": -1}),
            json!({"polygon": [[1, 2], [3, 4], [5, 6]], "bufferKm": 1e9}),
            json!({"latMin": 1.0}),
            json!({"latMin": 2.0, "latMax": 1.0, "lonMin": 0.0, "lonMax": 1.0}),
        ] {
            assert!(GeoFilter::from_json(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn json_round_trip() {
        let f = square(2.5);
        assert_eq!(GeoFilter::from_json(&f.to_json()).unwrap().unwrap(), f);
    }
}
