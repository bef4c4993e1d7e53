//! Edge rules that depend only on coordinates or feature vectors.

use ndarray::ArrayView2;

use crate::GraphError;

/// The spot pitch: the median over spots of the distance to the nearest other spot, in the
/// units of `centres`. `None` with fewer than two distinct spots.
pub fn spot_pitch(centres: &[(f64, f64)]) -> Option<f64> {
    let mut nearest: Vec<f64> = centres
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            centres
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, b)| (a.0 - b.0).hypot(a.1 - b.1))
                .filter(|&d| d > 0.0)
                .min_by(f64::total_cmp)
        })
        .collect();
    if nearest.is_empty() {
        return None;
    }
    nearest.sort_by(f64::total_cmp);
    Some(nearest[nearest.len() / 2])
}

/// Spatial edges: each spot picks its nearest spots at most `radius` away (at most
/// `max_neighbours`, nearest first, ties by index); every picked pair becomes an edge in both
/// directions, without duplicates. A spot picked by others can thus have more than
/// `max_neighbours` edges.
pub fn spatial_edges(centres: &[(f64, f64)], radius: f64, max_neighbours: usize) -> Vec<(u32, u32)> {
    let mut edges = std::collections::BTreeSet::new();
    for (i, a) in centres.iter().enumerate() {
        let mut near: Vec<(f64, usize)> = centres
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, b)| ((a.0 - b.0).hypot(a.1 - b.1), j))
            .filter(|&(d, _)| d <= radius)
            .collect();
        near.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        for &(_, j) in near.iter().take(max_neighbours) {
            edges.insert((j as u32, i as u32));
            edges.insert((i as u32, j as u32));
        }
    }
    edges.into_iter().collect()
}

/// k-nearest-neighbour edges by Euclidean distance between rows of `features`: each row
/// receives an edge from each of its `k` nearest other rows (ties by index).
pub fn knn_edges(features: ArrayView2<f32>, k: usize) -> Result<Vec<(u32, u32)>, GraphError> {
    let n = features.nrows();
    if features.iter().any(|v| !v.is_finite()) {
        return Err(GraphError::Input("features contain NaN or infinity".into()));
    }
    // ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b, with the products as one matrix multiplication.
    let squares: Vec<f32> = features.rows().into_iter().map(|r| r.dot(&r)).collect();
    let gram = features.dot(&features.t());
    let mut edges = Vec::with_capacity(n * k.min(n.saturating_sub(1)));
    for i in 0..n {
        let mut near: Vec<(f32, usize)> =
            (0..n).filter(|&j| j != i).map(|j| ((squares[i] + squares[j] - 2.0 * gram[[i, j]]).max(0.0), j)).collect();
        near.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        edges.extend(near.iter().take(k).map(|&(_, j)| (j as u32, i as u32)));
    }
    Ok(edges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// A 3 × 3 grid of pitch 10 plus a far-away spot.
    fn grid() -> Vec<(f64, f64)> {
        let mut c: Vec<(f64, f64)> = (0..9).map(|i| (f64::from(i % 3) * 10.0, f64::from(i / 3) * 10.0)).collect();
        c.push((500.0, 500.0));
        c
    }

    #[test]
    fn the_pitch_is_the_median_nearest_distance() {
        assert_eq!(spot_pitch(&grid()), Some(10.0));
        assert_eq!(spot_pitch(&[(1.0, 1.0)]), None);
    }

    #[test]
    fn spatial_edges_respect_radius_cap_and_symmetry() {
        let edges = spatial_edges(&grid(), 15.0, 5);
        // The centre (4) picks its 4 neighbours at 10 and the lowest-index diagonal (0); the
        // other corners pick the centre themselves, and edges go both ways.
        let into_centre: Vec<u32> = edges.iter().filter(|e| e.1 == 4).map(|e| e.0).collect();
        assert_eq!(into_centre, vec![0, 1, 2, 3, 5, 6, 7, 8]);
        // With at most 2 picks, the centre picks 1 and 3; 5 picks (2, 4) and 7 picks (4, 6); the
        // corners' two nearest are edge spots, so they do not reach the centre.
        let capped = spatial_edges(&grid(), 15.0, 2);
        assert_eq!(capped.iter().filter(|e| e.1 == 4).map(|e| e.0).collect::<Vec<_>>(), vec![1, 3, 5, 7]);
        assert!(edges.iter().all(|&(s, d)| s != d), "no self loops");
        assert!(edges.iter().all(|&(s, d)| edges.contains(&(d, s))), "both directions");
        assert!(edges.iter().all(|&(s, d)| s != 9 && d != 9), "the far spot is alone");
        // A corner (0) has 2 neighbours at 10 and 1 at 14.1, all within the radius.
        let into_corner = edges.iter().filter(|e| e.1 == 0).count();
        assert_eq!(into_corner, 3);
        // A radius below the pitch gives no edges.
        assert!(spatial_edges(&grid(), 9.9, 5).is_empty());
    }

    #[test]
    fn knn_edges_pick_the_nearest_rows() {
        let f = array![[0.0f32, 0.0], [1.0, 0.0], [0.0, 3.0], [10.0, 10.0]];
        let edges = knn_edges(f.view(), 2).unwrap();
        let into = |d: u32| edges.iter().filter(|e| e.1 == d).map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(into(0), vec![1, 2]);
        assert_eq!(into(1), vec![0, 2]);
        assert_eq!(into(3), vec![2, 1]);
        assert_eq!(edges.len(), 8);
        assert!(knn_edges(array![[f32::NAN]].view(), 1).is_err());
    }
}
