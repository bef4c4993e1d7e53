//! Spatial edges on the real her2st spot layout.

use spahgc_graph::{spatial_edges, spot_pitch};

#[test]
fn her2st_spots_lie_on_a_290_px_grid_and_get_their_neighbours() {
    let Some(dir) = spahgc_testdata::shared("her2st") else { return };
    for name in ["B4", "C3"] {
        let section = spahgc_datasets::her2st::load(&dir, name).unwrap();
        let centres = section.centres();
        let pitch = spot_pitch(&centres).unwrap();
        assert!((270.0..310.0).contains(&pitch), "{name}: the array pitch is about 290 px, got {pitch}");
        let edges = spatial_edges(&centres, 1.5 * pitch, 5);
        let picks_of = |i: u32| edges.iter().filter(|e| e.1 == i).count();
        // On a square grid with radius 1.5 pitches, a spot inside the tissue has 8 neighbours
        // within reach and picks 5; most spots are inside.
        let full = (0..centres.len() as u32).filter(|&i| picks_of(i) >= 5).count();
        assert!(full * 2 > centres.len(), "{name}: only {full} of {} spots have 5 neighbours", centres.len());
        assert!(edges.iter().all(|&(s, d)| s != d));
    }
}
