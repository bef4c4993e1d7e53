//! Edge rules that depend only on coordinates or feature vectors.

use ndarray::ArrayView2;

use crate::GraphError;

/// Spot indices sorted by x (ties by index), for sweeps that look only at spots close in x.
fn by_x(centres: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..centres.len()).collect();
    order.sort_by(|&a, &b| centres[a].0.total_cmp(&centres[b].0).then(a.cmp(&b)));
    order
}

/// The spot pitch: the median over spots of the distance to the nearest other spot, in the
/// units of `centres`. `None` with fewer than two distinct spots.
pub fn spot_pitch(centres: &[(f64, f64)]) -> Option<f64> {
    let order = by_x(centres);
    let mut nearest = Vec::with_capacity(centres.len());
    for (p, &i) in order.iter().enumerate() {
        let a = centres[i];
        let mut best = f64::INFINITY;
        // Outwards in x from the spot, until the x distance alone exceeds the best so far.
        let mut visit = |j: usize| {
            let b = centres[j];
            if (a.0 - b.0).abs() > best {
                return false;
            }
            let d = (a.0 - b.0).hypot(a.1 - b.1);
            if d > 0.0 && d < best {
                best = d;
            }
            true
        };
        for &j in &order[p + 1..] {
            if !visit(j) {
                break;
            }
        }
        for &j in order[..p].iter().rev() {
            if !visit(j) {
                break;
            }
        }
        if best.is_finite() {
            nearest.push(best);
        }
    }
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
    let order = by_x(centres);
    let mut edges = std::collections::BTreeSet::new();
    for (i, a) in centres.iter().enumerate() {
        // Only spots within `radius` in x can be within `radius`.
        let first = order.partition_point(|&j| centres[j].0 < a.0 - radius);
        let mut near: Vec<(f64, usize)> = order[first..]
            .iter()
            .take_while(|&&j| centres[j].0 <= a.0 + radius)
            .filter(|&&j| j != i)
            .map(|&j| ((a.0 - centres[j].0).hypot(a.1 - centres[j].1), j))
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
    if features.iter().any(|v| !v.is_finite()) {
        return Err(GraphError::Input("features contain NaN or infinity".into()));
    }
    let distances = spahgc_bank::squared_distances(features);
    Ok(knn_edges_by(features.nrows(), k, |i, j| distances[[i, j]]))
}

/// k-nearest-neighbour edges among `n` items whose (squared) distances `distance(i, j)` gives:
/// each item receives an edge from each of its `k` nearest others (ties by index).
pub fn knn_edges_by(n: usize, k: usize, distance: impl Fn(usize, usize) -> f32) -> Vec<(u32, u32)> {
    let k = k.min(n.saturating_sub(1));
    let order = |x: &(f32, usize), y: &(f32, usize)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
    let mut edges = Vec::with_capacity(n * k);
    if k == 0 {
        return edges;
    }
    for i in 0..n {
        let mut near: Vec<(f32, usize)> = (0..n).filter(|&j| j != i).map(|j| (distance(i, j), j)).collect();
        if k < near.len() {
            near.select_nth_unstable_by(k - 1, order);
            near.truncate(k);
        }
        near.sort_by(order);
        edges.extend(near.iter().map(|&(_, j)| (j as u32, i as u32)));
    }
    edges
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

    #[test]
    fn sweeps_find_what_comparing_every_pair_finds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Jittered grid points, some repeated, some sharing an x.
        let mut centres: Vec<(f64, f64)> = (0..300)
            .map(|i| (f64::from(i % 20) * 10.0 + rng.random_range(-2.0..2.0), f64::from(i / 20) * 10.0))
            .collect();
        centres.extend_from_slice(&[centres[5], centres[17], (centres[3].0, 500.0)]);
        let distance = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).hypot(a.1 - b.1);
        let mut nearest: Vec<f64> = centres
            .iter()
            .map(|&a| centres.iter().map(|&b| distance(a, b)).filter(|&d| d > 0.0).fold(f64::INFINITY, f64::min))
            .collect();
        nearest.sort_by(f64::total_cmp);
        assert_eq!(spot_pitch(&centres), Some(nearest[nearest.len() / 2]));
        let mut expected = std::collections::BTreeSet::new();
        for (i, &a) in centres.iter().enumerate() {
            let mut near: Vec<(f64, usize)> = (0..centres.len())
                .filter(|&j| j != i)
                .map(|j| (distance(a, centres[j]), j))
                .filter(|&(d, _)| d <= 15.0)
                .collect();
            near.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            for &(_, j) in near.iter().take(4) {
                expected.extend([(i as u32, j as u32), (j as u32, i as u32)]);
            }
        }
        assert_eq!(spatial_edges(&centres, 15.0, 4), expected.into_iter().collect::<Vec<_>>());
    }
}
