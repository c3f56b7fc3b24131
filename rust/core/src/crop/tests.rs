use std::collections::VecDeque;

use ndarray::{s, Array3, Array4, ArrayD, Dimension, IxDyn};

use super::*;
use crate::components::tests::{blobs, Rng};

/// scipy's binary_fill_holes by brute force: BFS over background from every border voxel
/// (face connectivity); background not reached becomes foreground.
fn brute_fill(mask: &ArrayD<bool>) -> ArrayD<bool> {
    let shape = mask.shape().to_vec();
    let nd = shape.len();
    let mut reached = ArrayD::<bool>::from_elem(IxDyn(&shape), false);
    let mut q = VecDeque::new();
    for (i, &m) in mask.indexed_iter() {
        let idx: Vec<usize> = i.as_array_view().to_vec();
        let border = idx.iter().zip(&shape).any(|(&a, &s)| a == 0 || a + 1 == s);
        if !m && border {
            reached[IxDyn(&idx)] = true;
            q.push_back(idx);
        }
    }
    while let Some(p) = q.pop_front() {
        for d in 0..nd {
            for step in [-1isize, 1] {
                let v = p[d] as isize + step;
                if v < 0 || v >= shape[d] as isize {
                    continue;
                }
                let mut np = p.clone();
                np[d] = v as usize;
                if !mask[IxDyn(&np)] && !reached[IxDyn(&np)] {
                    reached[IxDyn(&np)] = true;
                    q.push_back(np);
                }
            }
        }
    }
    reached.mapv(|r| !r)
}

fn brute_bbox(mask: &ArrayD<bool>) -> Vec<[usize; 2]> {
    let nd = mask.ndim();
    let mut out = Vec::new();
    for ax in 0..nd {
        let n = mask.shape()[ax];
        let any: Vec<bool> = (0..n)
            .map(|i| mask.index_axis(Axis(ax), i).iter().any(|&v| v))
            .collect();
        match (any.iter().position(|&v| v), any.iter().rposition(|&v| v)) {
            (Some(a), Some(b)) => out.push([a, b + 1]),
            _ => out.push([0, n]),
        }
    }
    out
}

fn slicer(bbox: &[[usize; 2]]) -> Vec<ndarray::SliceInfoElem> {
    let mut v = vec![ndarray::SliceInfoElem::from(..)];
    v.extend(bbox.iter().map(|b| ndarray::SliceInfoElem::from(b[0]..b[1])));
    v
}

/// The expected (data, seg, bbox) of nnU-Net's crop_to_nonzero, written the slow way.
fn brute_crop(data: &ArrayD<f32>, seg: &ArrayD<i16>, nl: i16) -> (ArrayD<f32>, ArrayD<i16>, Vec<[usize; 2]>) {
    let c = data.shape()[0];
    let mut m = data.index_axis(Axis(0), 0).mapv(|v| v != 0.0);
    for ch in 1..c {
        m.zip_mut_with(&data.index_axis(Axis(0), ch), |a, &b| *a |= b != 0.0);
    }
    let filled = brute_fill(&m);
    let bbox = brute_bbox(&filled);
    let sl = slicer(&bbox);
    let d = data.slice(sl.as_slice()).to_owned();
    let mut s = seg.slice(sl.as_slice()).to_owned();
    let fm = filled.slice(&sl[1..]).to_owned();
    for mut sc in s.outer_iter_mut() {
        sc.zip_mut_with(&fm, |v, &f| {
            if *v == 0 && !f {
                *v = nl
            }
        });
    }
    (d, s, bbox)
}

fn random_case(rng: &mut Rng, two_d: bool) -> (ArrayD<f32>, ArrayD<i16>) {
    let c = 1 + rng.below(3) as usize;
    let mut shape = [
        1 + rng.below(10) as usize,
        1 + rng.below(10) as usize,
        1 + rng.below(70) as usize,
    ];
    if two_d {
        shape[1] = 1;
    }
    let density = [0.0, 0.2, 0.5, 0.8, 1.0][rng.below(5) as usize];
    let mut data = Array4::<f32>::zeros([c, shape[0], shape[1], shape[2]]);
    for ch in 0..c {
        let m = blobs(shape, density, rng);
        let vals = [-0.0f32, 1.5, f32::NAN, -2.0];
        data.index_axis_mut(Axis(0), ch).zip_mut_with(&m, |v, &on| {
            if on {
                *v = vals[(rng.below(3) + 1) as usize];
            } else if rng.below(10) == 0 {
                *v = -0.0;
            }
        });
    }
    let seg = Array3::<i16>::from_shape_fn(shape, |_| [0i16, 0, 1, 2, -1][rng.below(5) as usize]).insert_axis(Axis(0));
    let (data, seg) = (data.into_dyn(), seg.into_dyn());
    if two_d {
        (data.index_axis_move(Axis(2), 0), seg.index_axis_move(Axis(2), 0))
    } else {
        (data, seg)
    }
}

#[test]
fn crop_matches_brute_force() {
    let mut rng = Rng::new(17);
    for case in 0..150 {
        let (data, seg) = random_case(&mut rng, case % 3 == 2);
        let (wd, ws, wb) = brute_crop(&data, &seg, -1);
        let (d, s, b) = crop_to_nonzero(data.view(), seg.view(), -1).unwrap();
        assert_eq!(b, wb, "bbox, shape {:?}", data.shape());
        assert_eq!(d.shape(), wd.shape());
        assert!(d.iter().zip(wd.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "data");
        assert_eq!(s, ws, "seg, shape {:?}", data.shape());
        // Without seg: int8, 0 inside the filled mask, the label outside.
        let zero = seg.mapv(|_| 0i16);
        let (_, wz, _) = brute_crop(&data, &zero, 5);
        let (d2, s2, b2) = crop_to_nonzero_without_seg(data.view(), 5).unwrap();
        assert_eq!((d2.shape(), &b2), (d.shape(), &b));
        assert_eq!(s2, wz.mapv(|v| v as i8));
    }
}

#[test]
fn crop_handles_holes_strides_and_f16() {
    // A hollow box: the cavity is filled (seg keeps 0 there), the outside gets the label.
    let mut data = Array4::<f64>::zeros([1, 7, 8, 9]);
    data.slice_mut(s![0, 1..6, 2..7, 1..8]).fill(3.0);
    data.slice_mut(s![0, 2..5, 3..6, 2..7]).fill(0.0);
    let seg = ArrayD::<u8>::zeros(IxDyn(&[1, 7, 8, 9]));
    let (d, sg, b) = crop_to_nonzero(data.view().into_dyn(), seg.view(), 255).unwrap();
    assert_eq!(b, vec![[1, 6], [2, 7], [1, 8]]);
    assert_eq!(d.shape(), &[1, 5, 5, 7]);
    assert!(
        sg.iter().all(|&v| v == 0),
        "cavity and shell are inside the filled mask"
    );
    // Open the cavity to the outside through one face: now it is background outside.
    data[[0, 3, 4, 1]] = 0.0;
    let (_, sg, _) = crop_to_nonzero(data.view().into_dyn(), seg.view(), 255).unwrap();
    assert_eq!(sg[[0, 2, 2, 3]], 255);
    assert_eq!(sg[[0, 2, 2, 0]], 255);
    assert_eq!(sg[[0, 0, 0, 0]], 0);
    // Strided (reversed, F-order) input gives the same as its contiguous copy.
    let rev = data.slice(s![.., ..;-1, .., ..;-1]);
    let (a, sa, ba) = crop_to_nonzero(rev.into_dyn(), seg.view(), 7).unwrap();
    let (c, sc, bc) = crop_to_nonzero(rev.to_owned().into_dyn().view(), seg.view(), 7).unwrap();
    assert_eq!((a, sa, ba), (c, sc, bc));
    let h = data.mapv(half::f16::from_f64).into_dyn();
    let (hd, hs, hb) = crop_to_nonzero_without_seg(h.view(), -1).unwrap();
    let (_, fs, fb) = crop_to_nonzero_without_seg(data.view().into_dyn(), -1).unwrap();
    assert_eq!((hs, hb), (fs, fb));
    assert_eq!(hd.shape(), &[1, 5, 5, 7]);
}

#[test]
fn empty_mask_keeps_everything() {
    let data = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 4, 5]));
    let seg = ArrayD::<i8>::from_elem(IxDyn(&[1, 3, 4, 5]), 2);
    let (d, s, b) = crop_to_nonzero(data.view(), seg.view(), -1).unwrap();
    assert_eq!(b, vec![[0, 3], [0, 4], [0, 5]]);
    assert_eq!(d.shape(), data.shape());
    assert_eq!(s, seg);
    let (_, s, _) = crop_to_nonzero_without_seg(data.view(), -1).unwrap();
    assert!(s.iter().all(|&v| v == -1));
}

#[test]
fn large_case_uses_many_slabs() {
    let mut rng = Rng::new(23);
    let shape = [40usize, 20, 90];
    let m = blobs(shape, 0.6, &mut rng);
    let data = m.mapv(|v| v as u8 as f32).insert_axis(Axis(0)).into_dyn();
    let seg = ArrayD::<i16>::zeros(IxDyn(data.shape()));
    let (wd, ws, wb) = brute_crop(&data, &seg, -1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let (d, s, b) = pool.install(|| crop_to_nonzero(data.view(), seg.view(), -1)).unwrap();
    assert_eq!((d, s, b), (wd, ws, wb));
}

#[test]
fn bad_arguments_name_the_argument() {
    let data = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
    let e = crop_to_nonzero_without_seg(data.view(), -1).unwrap_err();
    assert!(e.to_string().starts_with("data:"), "{e}");
    let data = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 0, 2]));
    let e = crop_to_nonzero_without_seg(data.view(), -1).unwrap_err();
    assert!(e.to_string().starts_with("data:"), "{e}");
    let data = ArrayD::<f32>::ones(IxDyn(&[1, 3, 4, 2]));
    let e = crop_to_nonzero_without_seg(data.view(), 128).unwrap_err();
    assert!(e.to_string().starts_with("nonzero_label:"), "{e}");
    let seg = ArrayD::<u8>::zeros(IxDyn(&[1, 3, 4, 2]));
    let e = crop_to_nonzero(data.view(), seg.view(), -1).unwrap_err();
    assert!(e.to_string().starts_with("nonzero_label:"), "{e}");
    let seg = ArrayD::<u8>::zeros(IxDyn(&[1, 3, 4, 3]));
    let e = crop_to_nonzero(data.view(), seg.view(), 1).unwrap_err();
    assert!(e.to_string().starts_with("seg:"), "{e}");
}
