//! `geo_distance`: how far a transaction happens from the user's home.
//!
//! Haversine great-circle distance between the request's coordinates and the user's
//! stored home coordinates, plus a "far from home" flag.

use skewless_sdk::{DType, Input, Output, Result, Signature, Transform, ValuesColumn, export};

/// Mean Earth radius, in kilometres (IUGG).
pub const EARTH_RADIUS_KM: f64 = 6371.0088;
/// Beyond this distance a transaction counts as far from home.
pub const FAR_FROM_HOME_KM: f64 = 100.0;

/// Great-circle distance in kilometres between two points given in degrees.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// The transform.
#[derive(Debug)]
pub struct GeoDistance;

impl Transform for GeoDistance {
    fn signature() -> Signature {
        Signature::new()
            .input("lat", DType::Float64)
            .input("lon", DType::Float64)
            .input("home_lat", DType::Float64)
            .input("home_lon", DType::Float64)
            .output("distance_from_home_km", DType::Float64)
            .output("is_far_from_home", DType::Bool)
    }

    fn transform(input: &Input) -> Result<Output> {
        let lat = input.float64("lat")?;
        let lon = input.float64("lon")?;
        let home_lat = input.float64("home_lat")?;
        let home_lon = input.float64("home_lon")?;
        let rows = input.rows();

        let (lat_v, lon_v) = (lat.values(), lon.values());
        let (hlat_v, hlon_v) = (home_lat.values(), home_lon.values());
        let distance: Vec<f64> = (0..rows)
            .map(|i| haversine_km(lat_v[i], lon_v[i], hlat_v[i], hlon_v[i]))
            .collect();
        let distance = ValuesColumn::from_values(distance)
            .and_validity(lat.validity())
            .and_validity(lon.validity())
            .and_validity(home_lat.validity())
            .and_validity(home_lon.validity());
        let far = distance.view().map(|d| d > FAR_FROM_HOME_KM);

        Ok(Output::new(rows)
            .float64("distance_from_home_km", distance)
            .bool("is_far_from_home", far))
    }
}

export!(GeoDistance);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        assert_eq!(haversine_km(48.8566, 2.3522, 48.8566, 2.3522), 0.0);
        // Paris to London is about 344 km.
        let d = haversine_km(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((d - 343.9).abs() < 1.0, "{d}");
        // Antipodes: half the circumference, no NaN from rounding past 1.0.
        let d = haversine_km(0.0, 0.0, 0.0, 180.0);
        assert!(
            (d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6,
            "{d}"
        );
    }

    #[test]
    fn batch_propagates_nulls() {
        let input = Input::builder(2)
            .float64("lat", ValuesColumn::from_values(vec![48.8566, 0.0]))
            .float64("lon", ValuesColumn::from_values(vec![2.3522, 0.0]))
            .float64(
                "home_lat",
                ValuesColumn::from_options([Some(51.5074), None]),
            )
            .float64("home_lon", ValuesColumn::from_values(vec![-0.1278, 0.0]))
            .build()
            .unwrap();
        let out = GeoDistance::transform(&input).unwrap();
        let far: Vec<_> = out.get_bool("is_far_from_home").unwrap().iter().collect();
        assert_eq!(far, [Some(true), None]);
        assert!(
            out.get_float64("distance_from_home_km")
                .unwrap()
                .get(1)
                .is_none()
        );
    }
}
