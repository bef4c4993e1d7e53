//! The hand-written operations against hand-computed values, and their gradients against
//! central finite differences on a tiny graph.

use candle_core::{Device, Tensor, Var};
use rand::Rng;
use spahgc_model::nn::{
    AdamW, Edges, LayerNorm, Noise, ParamSource, Scoring, Weights, bootstrap_loss, mean_column_pearson, seeded,
};

/// A tiny graph of 4 sources and 3 destinations: destination 0 hears three sources,
/// destination 1 two, destination 2 none.
const EDGES: [(u32, u32); 5] = [(0, 0), (1, 0), (3, 0), (2, 1), (3, 1)];

const ONE_HEAD: Scoring = Scoring { heads: 1, negative_slope: 0.2, dropout: 0.0 };

fn random(rows: usize, cols: usize, seed: u64) -> Tensor {
    let mut rng = seeded(seed);
    let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Checks the gradient of the scalar `f` with respect to each of `inputs` against central
/// differences.
fn check_gradients(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) {
    const STEP: f32 = 1e-2;
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let tracked: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = f(&tracked).backward().unwrap();
    for (i, var) in vars.iter().enumerate() {
        let analytic = values(grads.get(var).expect("every input reaches the output"));
        let base = values(&inputs[i]);
        let largest = analytic.iter().fold(0f32, |m, g| m.max(g.abs()));
        assert!(largest > 1e-4, "input {i}: the output depends on it");
        for (j, &g) in analytic.iter().enumerate() {
            let at = |delta: f32| {
                let mut moved = base.clone();
                moved[j] += delta;
                let mut shifted = inputs.to_vec();
                shifted[i] = Tensor::from_vec(moved, inputs[i].shape(), &Device::Cpu).unwrap();
                f64::from(f(&shifted).to_scalar::<f32>().unwrap())
            };
            let numeric = ((at(STEP) - at(-STEP)) / (2.0 * f64::from(STEP))) as f32;
            assert!(
                (numeric - g).abs() <= 2e-2 * largest + 1e-3,
                "input {i} entry {j}: analytic {g}, finite differences {numeric}"
            );
        }
    }
}

/// A scalar that weighs every output entry differently, so each one's gradient is checked.
fn weighted_sum(t: &Tensor, seed: u64) -> Tensor {
    let (rows, cols) = t.dims2().unwrap();
    (t * random(rows, cols, seed)).unwrap().sum_all().unwrap()
}

#[test]
fn scatter_mean_averages_incoming_rows() {
    let edges = Edges::new(&EDGES, 3).unwrap();
    let x = Tensor::new(&[[1f32, 10.], [2., 20.], [3., 30.], [6., 60.]], &Device::Cpu).unwrap();
    let mean = edges.scatter_mean(&x).unwrap();
    assert_eq!(values(&mean), vec![3.0, 30.0, 4.5, 45.0, 0.0, 0.0]);
    check_gradients(&[random(4, 3, 1)], |x| weighted_sum(&edges.scatter_mean(&x[0]).unwrap(), 2));
}

#[test]
fn attention_is_a_softmax_over_incoming_edges() {
    // One head of width 1: destination 1 hears sources 2 and 3 with scores q·k = 1·1 and 1·2.
    let edges = Edges::new(&EDGES, 3).unwrap();
    let q = Tensor::new(&[[0f32], [1.], [5.]], &Device::Cpu).unwrap();
    let k = Tensor::new(&[[0f32], [0.], [1.], [2.]], &Device::Cpu).unwrap();
    let v = Tensor::new(&[[7f32], [8.], [10.], [20.]], &Device::Cpu).unwrap();
    let out = values(&edges.attend(&q, &k, &v, ONE_HEAD, &mut Noise::none()).unwrap());
    let (a, b) = (1f32.exp(), 2f32.exp());
    assert!((out[0] - (7.0 + 8.0 + 20.0) / 3.0).abs() < 1e-5, "equal scores average: {out:?}");
    assert!((out[1] - (10.0 * a + 20.0 * b) / (a + b)).abs() < 1e-4, "{out:?}");
    assert_eq!(out[2], 0.0, "a node without incoming edges gets nothing");
    // Negative scores go through LeakyReLU: slope 0.2 scales them.
    let negative = Tensor::new(&[[0f32], [-1.], [0.]], &Device::Cpu).unwrap();
    let out = values(&edges.attend(&negative, &k, &v, ONE_HEAD, &mut Noise::none()).unwrap());
    let (a, b) = ((-0.2f32).exp(), (-0.4f32).exp());
    assert!((out[1] - (10.0 * a + 20.0 * b) / (a + b)).abs() < 1e-4, "{out:?}");
}

#[test]
fn attention_gradients_match_finite_differences() {
    let edges = Edges::new(&EDGES, 3).unwrap();
    let inputs = [random(3, 4, 3), random(4, 4, 4), random(4, 4, 5)];
    let two_heads = Scoring { heads: 2, ..ONE_HEAD };
    check_gradients(&inputs, |t| {
        weighted_sum(&edges.attend(&t[0], &t[1], &t[2], two_heads, &mut Noise::none()).unwrap(), 6)
    });
    // With dropout on the weights: the same generator state draws the same mask at every call.
    let dropping = Scoring { dropout: 0.3, ..two_heads };
    check_gradients(&inputs, |t| {
        let mut rng = seeded(17);
        weighted_sum(&edges.attend(&t[0], &t[1], &t[2], dropping, &mut Noise::training(&mut rng)).unwrap(), 6)
    });
}

#[test]
fn edges_that_do_not_fit_the_rows_are_refused() {
    assert!(Edges::new(&EDGES, 1).is_err(), "destinations past n_dst");
    let edges = Edges::new(&EDGES, 3).unwrap();
    let err = edges.scatter_mean(&random(2, 3, 1)).unwrap_err().to_string();
    assert!(err.contains("source 3 of 2 rows"), "{err}");
    let err = edges.attend(&random(2, 4, 1), &random(4, 4, 2), &random(4, 4, 3), ONE_HEAD, &mut Noise::none());
    assert!(err.unwrap_err().to_string().contains("2 destination rows for 3 destinations"));
}

#[test]
fn layer_norm_gradients_match_finite_differences() {
    let inputs = [random(3, 5, 7), random(1, 5, 8).flatten_all().unwrap(), random(1, 5, 9).flatten_all().unwrap()];
    check_gradients(&inputs, |t| {
        let weights = Weights::from([("n.weight".to_string(), t[1].clone()), ("n.bias".to_string(), t[2].clone())]);
        let mut src = ParamSource::Existing { weights: &weights, used: Default::default() };
        let norm = LayerNorm::new(&mut src, "n", 5).unwrap();
        weighted_sum(&norm.forward(&t[0]).unwrap(), 10)
    });
}

#[test]
fn losses_match_hand_computed_values_and_their_gradients() {
    // Column 0 is perfectly correlated, column 1 perfectly anti-correlated: mean r = 0.
    let a = Tensor::new(&[[1f32, 1.], [2., 2.], [3., 3.]], &Device::Cpu).unwrap();
    let b = Tensor::new(&[[2f32, 3.], [4., 2.], [6., 1.]], &Device::Cpu).unwrap();
    let r = mean_column_pearson(&a, &b).unwrap().to_scalar::<f32>().unwrap();
    assert!(r.abs() < 1e-6, "{r}");
    let r = mean_column_pearson(&a, &a).unwrap().to_scalar::<f32>().unwrap();
    assert!((r - 1.0).abs() < 1e-6, "{r}");
    // Orthogonal rows: cosine 0, loss 2; identical rows: loss 0.
    let x = Tensor::new(&[[1f32, 0.], [0., 3.]], &Device::Cpu).unwrap();
    let y = Tensor::new(&[[0f32, 2.], [5., 0.]], &Device::Cpu).unwrap();
    assert!((bootstrap_loss(&x, &y).unwrap().to_scalar::<f32>().unwrap() - 2.0).abs() < 1e-6);
    assert!(bootstrap_loss(&x, &x).unwrap().to_scalar::<f32>().unwrap().abs() < 1e-6);

    check_gradients(&[random(6, 3, 11), random(6, 3, 12)], |t| mean_column_pearson(&t[0], &t[1]).unwrap());
    check_gradients(&[random(4, 3, 13), random(4, 3, 14)], |t| bootstrap_loss(&t[0], &t[1]).unwrap());
}

#[test]
fn adamw_takes_the_same_steps_as_candles() {
    let start = random(4, 3, 15);
    let target = random(4, 3, 16);
    let run = |step: &mut dyn FnMut(&Tensor), var: &Var| {
        for _ in 0..5 {
            step(&(var.as_tensor() - &target).unwrap().sqr().unwrap().sum_all().unwrap());
        }
        values(var.as_tensor())
    };
    let ours = Var::from_tensor(&start).unwrap();
    let mut optimiser = AdamW::new(vec![ours.clone()], 0.1, 0.01);
    let ours = run(&mut |loss| optimiser.backward_step(loss).unwrap(), &ours);

    use candle_nn::Optimizer;
    let theirs = Var::from_tensor(&start).unwrap();
    let params = candle_nn::ParamsAdamW { lr: 0.1, weight_decay: 0.01, ..Default::default() };
    let mut reference = candle_nn::AdamW::new(vec![theirs.clone()], params).unwrap();
    let theirs = run(&mut |loss| reference.backward_step(loss).unwrap(), &theirs);

    assert_ne!(ours, values(&start), "the variable moved");
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-5, "{ours:?} vs {theirs:?}");
    }
}
