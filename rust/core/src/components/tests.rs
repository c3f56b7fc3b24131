use std::collections::VecDeque;

use ndarray::{Array3, ArrayD, IxDyn, ShapeBuilder};

use super::*;

/// xorshift64*: deterministic test data without dependencies.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random blobs: a random field, thresholded after a few box-smoothing passes.
pub(crate) fn blobs(shape: [usize; 3], density: f64, rng: &mut Rng) -> Array3<bool> {
    let mut f = Array3::<f64>::from_shape_fn(shape, |_| (rng.below(1000) as f64) / 1000.0);
    let smooth = rng.below(3);
    for _ in 0..smooth {
        let g = f.clone();
        let s = shape.map(|v| v as isize);
        for ((x, y, z), v) in f.indexed_iter_mut() {
            let mut acc = 0.0;
            let mut cnt = 0.0;
            for dx in -1..=1isize {
                for dy in -1..=1isize {
                    for dz in -1..=1isize {
                        let (a, b, c) = (x as isize + dx, y as isize + dy, z as isize + dz);
                        if a >= 0 && b >= 0 && c >= 0 && a < s[0] && b < s[1] && c < s[2] {
                            acc += g[[a as usize, b as usize, c as usize]];
                            cnt += 1.0;
                        }
                    }
                }
            }
            *v = acc / cnt;
        }
    }
    // Threshold at the `density` quantile.
    let mut vals: Vec<f64> = f.iter().copied().collect();
    vals.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let k = ((1.0 - density) * vals.len() as f64) as usize;
    let thr = if k >= vals.len() { f64::INFINITY } else { vals[k] };
    f.mapv(|v| v >= thr)
}

fn offsets(ndim: usize, conn: Connectivity) -> Vec<Vec<isize>> {
    let mut out = Vec::new();
    let rank = match conn {
        Connectivity::Face => 1,
        Connectivity::Edge => 2,
        Connectivity::Full => ndim,
    };
    let n = 3usize.pow(ndim as u32);
    for k in 0..n {
        let mut o = Vec::new();
        let mut kk = k;
        for _ in 0..ndim {
            o.push((kk % 3) as isize - 1);
            kk /= 3;
        }
        let nz = o.iter().filter(|&&v| v != 0).count();
        if nz >= 1 && nz <= rank {
            out.push(o);
        }
    }
    out
}

/// Reference labelling: BFS from each unlabelled foreground voxel in raster order.
pub(crate) fn brute_label(mask: &ArrayD<bool>, conn: Connectivity) -> (ArrayD<u32>, u32) {
    let shape = mask.shape().to_vec();
    let offs = offsets(shape.len(), conn);
    let flat: Vec<bool> = mask.iter().copied().collect();
    let mut lab = vec![0u32; flat.len()];
    let strides: Vec<usize> = (0..shape.len()).map(|d| shape[d + 1..].iter().product()).collect();
    let coords = |i: usize| -> Vec<isize> {
        strides
            .iter()
            .zip(&shape)
            .map(|(&s, &n)| ((i / s) % n) as isize)
            .collect()
    };
    let mut n = 0;
    let mut q = VecDeque::new();
    for start in 0..flat.len() {
        if !flat[start] || lab[start] != 0 {
            continue;
        }
        n += 1;
        lab[start] = n;
        q.push_back(start);
        while let Some(p) = q.pop_front() {
            let c = coords(p);
            'next: for o in &offs {
                let mut j = 0usize;
                for d in 0..shape.len() {
                    let v = c[d] + o[d];
                    if v < 0 || v >= shape[d] as isize {
                        continue 'next;
                    }
                    j += v as usize * strides[d];
                }
                if flat[j] && lab[j] == 0 {
                    lab[j] = n;
                    q.push_back(j);
                }
            }
        }
    }
    (ArrayD::from_shape_vec(IxDyn(&shape), lab).unwrap(), n)
}

fn random_shape(rng: &mut Rng, max: u64) -> [usize; 3] {
    [
        1 + rng.below(max) as usize,
        1 + rng.below(max) as usize,
        1 + rng.below(max + 40) as usize,
    ]
}

#[test]
fn labels_match_bfs_3d_all_connectivities() {
    let mut rng = Rng::new(7);
    for case in 0..60 {
        let shape = random_shape(&mut rng, 9);
        let density = [0.0, 0.1, 0.4, 0.6, 1.0][case % 5];
        let m = blobs(shape, density, &mut rng).into_dyn();
        for conn in [Connectivity::Face, Connectivity::Edge, Connectivity::Full] {
            let (got, n) = label_components(m.view(), conn).unwrap();
            let (want, wn) = brute_label(&m, conn);
            assert_eq!(n, wn, "count, shape {shape:?} {conn:?}");
            assert_eq!(got, want, "labels, shape {shape:?} {conn:?}");
        }
    }
}

#[test]
fn labels_match_bfs_2d() {
    let mut rng = Rng::new(11);
    for case in 0..60 {
        let shape = random_shape(&mut rng, 30);
        let density = [0.05, 0.3, 0.5, 0.7][case % 4];
        let m3 = blobs([shape[0], shape[2], 1], density, &mut rng);
        let m = m3.index_axis(Axis(2), 0).to_owned().into_dyn();
        for (conn, nb) in [(Connectivity::Face, 4), (Connectivity::Full, 8)] {
            assert_eq!(Connectivity::from_neighbours(2, nb).unwrap(), conn);
            let (got, n) = label_components(m.view(), conn).unwrap();
            let (want, wn) = brute_label(&m, conn);
            assert_eq!(n, wn);
            assert_eq!(got, want, "2D shape {:?} {conn:?}", m.shape());
        }
    }
}

#[test]
fn labels_across_many_slabs_and_strided_views() {
    // Large enough for several slabs; compare a C-order mask, its F-order copy and a view
    // with a negative stride against the brute force result.
    let mut rng = Rng::new(3);
    for density in [0.02, 0.35, 0.55] {
        let m = blobs([40, 24, 70], density, &mut rng).into_dyn();
        let (want, wn) = brute_label(&m, Connectivity::Full);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let (got, n) = pool.install(|| label_components(m.view(), Connectivity::Full)).unwrap();
        assert_eq!((n, &got), (wn, &want));
        let mut f = ArrayD::<bool>::from_elem(IxDyn(m.shape()).f(), false);
        f.assign(&m);
        let (got, n) = label_components(f.view(), Connectivity::Full).unwrap();
        assert_eq!((n, &got), (wn, &want));
        // Reversed first axis: numbering changes, so compare with brute force on the copy.
        let rev = m.slice(ndarray::s![..;-1, .., ..]).into_dyn();
        let (want_r, wn_r) = brute_label(&rev.to_owned(), Connectivity::Face);
        let (got_r, n_r) = label_components(rev, Connectivity::Face).unwrap();
        assert_eq!((n_r, got_r), (wn_r, want_r));
    }
}

#[test]
fn integer_masks_use_nonzero() {
    let m = ndarray::arr2(&[[0i16, -3, 0], [0, 0, 7]]).into_dyn();
    let (l, n) = label_components(m.view(), Connectivity::Face).unwrap();
    assert_eq!(n, 2);
    assert_eq!(l, ndarray::arr2(&[[0u32, 1, 0], [0, 0, 2]]).into_dyn());
    let (l, n) = label_components(m.view(), Connectivity::Full).unwrap();
    assert_eq!(n, 1);
    assert_eq!(l, ndarray::arr2(&[[0u32, 1, 0], [0, 0, 1]]).into_dyn());
}

#[test]
fn empty_and_degenerate_shapes() {
    let m = ArrayD::<bool>::from_elem(IxDyn(&[0, 4, 5]), true);
    let (l, n) = label_components(m.view(), Connectivity::Full).unwrap();
    assert_eq!((n, l.shape()), (0, &[0usize, 4, 5][..]));
    let m = ArrayD::<bool>::from_elem(IxDyn(&[1, 1, 1]), true);
    assert_eq!(label_components(m.view(), Connectivity::Face).unwrap().1, 1);
    let m = ArrayD::<u8>::zeros(IxDyn(&[3, 1, 4]));
    assert_eq!(label_components(m.view(), Connectivity::Face).unwrap().1, 0);
}

#[test]
fn bad_arguments_name_the_argument() {
    let m = ArrayD::<bool>::from_elem(IxDyn(&[2, 2, 2, 2]), true);
    let e = label_components(m.view(), Connectivity::Full).unwrap_err();
    assert!(e.to_string().starts_with("mask:"), "{e}");
    let e = Connectivity::from_neighbours(3, 8).unwrap_err();
    assert!(e.to_string().starts_with("connectivity:"), "{e}");
    let e = Connectivity::from_neighbours(2, 6).unwrap_err();
    assert!(e.to_string().starts_with("connectivity:"), "{e}");
    let s = ArrayD::<u8>::zeros(IxDyn(&[2, 2]));
    let e = remove_all_but_largest_component(s.view(), &[1], -1).unwrap_err();
    assert!(e.to_string().starts_with("background_label:"), "{e}");
    let e = remove_small_components(s.view(), &[1], 3, 256).unwrap_err();
    assert!(e.to_string().starts_with("replace_with:"), "{e}");
}

/// Reference filter: brute-force labels, sizes, and the keep rule.
fn brute_filter(seg: &ArrayD<i16>, labels: &[i64], keep: Keep, replace: i16) -> ArrayD<i16> {
    let mask = seg.mapv(|v| labels.contains(&(v as i64)));
    let (lab, n) = brute_label(&mask, Connectivity::Full);
    let mut sizes = vec![0u64; n as usize + 1];
    for &l in lab.iter() {
        sizes[l as usize] += 1;
    }
    let max = sizes.iter().skip(1).copied().max().unwrap_or(0);
    let mut out = seg.clone();
    for (o, &l) in out.iter_mut().zip(lab.iter()) {
        let s = sizes[l as usize];
        let removed = l > 0
            && match keep {
                Keep::Largest => s < max,
                Keep::AtLeast(m) => s < m,
            };
        if removed {
            *o = replace;
        }
    }
    out
}

#[test]
fn filters_match_brute_force() {
    let mut rng = Rng::new(5);
    for case in 0..80 {
        let shape = random_shape(&mut rng, 8);
        let two_d = case % 4 == 3;
        let a = blobs(shape, 0.3, &mut rng);
        let b = blobs(shape, 0.3, &mut rng);
        let mut seg = Array3::<i16>::zeros(shape);
        for ((s, &x), &y) in seg.iter_mut().zip(a.iter()).zip(b.iter()) {
            *s = x as i16 + 2 * y as i16 - (rng.below(50) == 0) as i16;
        }
        let seg = if two_d {
            seg.index_axis(Axis(1), 0).to_owned().into_dyn()
        } else {
            seg.into_dyn()
        };
        let label_sets: [&[i64]; 6] = [&[1], &[1, 2], &[2, 3], &[1, 3], &[-1, 3], &[]];
        let labels = label_sets[case % 6];
        let want = brute_filter(&seg, labels, Keep::Largest, 0);
        let got = remove_all_but_largest_component(seg.view(), labels, 0).unwrap();
        assert_eq!(got, want, "largest {labels:?} shape {:?}", seg.shape());
        let min = rng.below(12);
        let want = brute_filter(&seg, labels, Keep::AtLeast(min), -5);
        let got = remove_small_components(seg.view(), labels, min, -5).unwrap();
        assert_eq!(got, want, "small {labels:?} min {min}");
    }
}

#[test]
fn largest_keeps_ties_and_sparse_label_sets() {
    // Two equal components of label 1 and 4 (sparse set -> table predicate), one smaller.
    let mut s = ArrayD::<u8>::zeros(IxDyn(&[1, 3, 9]));
    for z in 0..3 {
        s[[0, 0, z]] = 1;
    }
    for z in 5..8 {
        s[[0, 2, z]] = 4;
    }
    s[[0, 2, 0]] = 1;
    let out = remove_all_but_largest_component(s.view(), &[1, 4], 0).unwrap();
    let mut want = s.clone();
    want[[0, 2, 0]] = 0;
    assert_eq!(out, want);
    // Labels out of the dtype's range match nothing; label 4 alone keeps its one component.
    let out = remove_all_but_largest_component(s.view(), &[4, 300, -1], 9).unwrap();
    assert_eq!(out, s);
    // A huge sparse set (sorted predicate) over i32.
    let s32 = s.mapv(|v| if v == 4 { 2_000_000_000i32 } else { v as i32 });
    let out = remove_all_but_largest_component(s32.view(), &[1, 2_000_000_000], 0).unwrap();
    assert_eq!(out, want.mapv(|v| if v == 4 { 2_000_000_000i32 } else { v as i32 }));
}
