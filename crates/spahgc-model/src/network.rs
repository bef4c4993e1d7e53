//! The SpaHGC network: pre-transforms, heterogeneous message-passing layers with cross-node dual
//! attention (CNDA), and the cross-node attention pooling (CNAP) readout.

use std::collections::BTreeSet;

use candle_core::Tensor;

use crate::ModelError;
use crate::config::{Architecture, ModelConfig};
use crate::graph::GraphTensors;
use crate::nn::{Edges, LayerNorm, Linear, Noise, ParamSource, Scoring, Weights, leaky_relu};

/// Multi-head attention along edges with query, key, value and output projections.
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl Attention {
    /// Projections from `query_width`-wide destination rows and `key_width`-wide source rows.
    fn new(
        src: &mut ParamSource,
        name: &str,
        query_width: usize,
        key_width: usize,
        hidden: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            q: Linear::attention(src, &format!("{name}.q"), query_width, hidden)?,
            k: Linear::attention(src, &format!("{name}.k"), key_width, hidden)?,
            v: Linear::attention(src, &format!("{name}.v"), key_width, hidden)?,
            out: Linear::attention(src, &format!("{name}.out"), hidden, hidden)?,
        })
    }

    fn forward(
        &self,
        edges: &Edges,
        destinations: &Tensor,
        sources: &Tensor,
        arch: &Architecture,
        noise: &mut Noise,
    ) -> Result<Tensor, ModelError> {
        let attended = edges.attend(
            &self.q.forward(destinations)?,
            &self.k.forward(sources)?,
            &self.v.forward(sources)?,
            Scoring { heads: arch.heads, negative_slope: arch.negative_slope, dropout: arch.attention_dropout },
            noise,
        )?;
        self.out.forward(&attended)
    }
}

/// GraphSAGE convolution with mean aggregation: `lin_l(mean of neighbours) + lin_r(self)`.
struct Sage {
    neighbours: Linear,
    own: Linear,
}

impl Sage {
    fn new(src: &mut ParamSource, name: &str, hidden: usize) -> Result<Self, ModelError> {
        Ok(Self {
            neighbours: Linear::standard(src, &format!("{name}.lin_l"), hidden, hidden, true)?,
            own: Linear::standard(src, &format!("{name}.lin_r"), hidden, hidden, false)?,
        })
    }

    fn forward(&self, x: &Tensor, edges: &Edges) -> Result<Tensor, ModelError> {
        Ok((self.neighbours.forward(&edges.scatter_mean(x)?)? + self.own.forward(x)?)?)
    }
}

/// Cross-node dual attention over the refer edges: targets attend over their references'
/// `[feature ‖ LayerNorm(expression token)]`, and references over the targets that retrieved
/// them.
struct Cnda {
    norm: LayerNorm,
    to_target: Attention,
    to_reference: Attention,
}

/// One message-passing layer.
struct Layer {
    target_sage: Sage,
    reference_sage: Sage,
    cnda: Option<Cnda>,
}

impl Layer {
    fn new(src: &mut ParamSource, name: &str, arch: &Architecture) -> Result<Self, ModelError> {
        let h = arch.hidden;
        let cnda = arch
            .cnda
            .then(|| -> Result<Cnda, ModelError> {
                Ok(Cnda {
                    norm: LayerNorm::new(src, &format!("{name}.cnda.norm"), h)?,
                    to_target: Attention::new(src, &format!("{name}.cnda.to_target"), h, 2 * h, h)?,
                    to_reference: Attention::new(src, &format!("{name}.cnda.to_reference"), 2 * h, h, h)?,
                })
            })
            .transpose()?;
        Ok(Self {
            target_sage: Sage::new(src, &format!("{name}.target_sage"), h)?,
            reference_sage: Sage::new(src, &format!("{name}.reference_sage"), h)?,
            cnda,
        })
    }

    fn forward(
        &self,
        g: &GraphTensors,
        nodes: &Nodes,
        arch: &Architecture,
        noise: &mut Noise,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let mut target = self.target_sage.forward(&nodes.targets, &g.target_edges)?;
        let mut reference = self.reference_sage.forward(&nodes.references, &g.reference_edges)?;
        if let Some(cnda) = &self.cnda {
            let xy = Tensor::cat(&[&nodes.references, &cnda.norm.forward(&nodes.expression)?], 1)?;
            let to_target = cnda.to_target.forward(&g.refer, &nodes.targets, &xy, arch, noise)?;
            let to_reference = cnda.to_reference.forward(&g.refer_back, &xy, &nodes.targets, arch, noise)?;
            target = ((target + to_target)? * 0.5)?;
            reference = ((reference + to_reference)? * 0.5)?;
        }
        Ok((leaky_relu(&target, arch.negative_slope)?, leaky_relu(&reference, arch.negative_slope)?))
    }
}

/// Hidden states of the graph's nodes.
struct Nodes {
    targets: Tensor,
    references: Tensor,
    /// The references' expression tokens, fixed through the layers.
    expression: Tensor,
}

/// The graph encoder: node features in, hidden target and reference states out. Its output is
/// what the contrastive loss compares between views.
pub(crate) struct Encoder {
    embedding_dim: usize,
    target_in: Linear,
    reference_in: Linear,
    shared: Linear,
    shared_norm: LayerNorm,
    expression_in: Linear,
    layers: Vec<Layer>,
}

impl Encoder {
    fn new(src: &mut ParamSource, embedding_dim: usize, genes: usize, arch: &Architecture) -> Result<Self, ModelError> {
        let h = arch.hidden;
        Ok(Self {
            embedding_dim,
            target_in: Linear::standard(src, "encoder.target_in", embedding_dim, h, false)?,
            reference_in: Linear::standard(src, "encoder.reference_in", embedding_dim + genes, h, false)?,
            shared: Linear::standard(src, "encoder.shared", h, h, false)?,
            shared_norm: LayerNorm::new(src, "encoder.shared_norm", h)?,
            expression_in: Linear::standard(src, "encoder.expression_in", genes, h, false)?,
            layers: (0..arch.layers)
                .map(|l| Layer::new(src, &format!("encoder.layers.{l}"), arch))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Hidden (target, reference) states for target features `x_t` (N × D) and reference
    /// features `x_r` (M × (D + G)).
    pub(crate) fn forward(
        &self,
        g: &GraphTensors,
        x_t: &Tensor,
        x_r: &Tensor,
        arch: &Architecture,
        noise: &mut Noise,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let genes = x_r.dim(1)? - self.embedding_dim;
        let mut shared = |x: Tensor| -> Result<Tensor, ModelError> {
            let x = noise.dropout(&leaky_relu(&x, arch.negative_slope)?, arch.dropout)?;
            leaky_relu(&self.shared_norm.forward(&self.shared.forward(&x)?)?, arch.negative_slope)
        };
        let mut nodes = Nodes {
            targets: shared(self.target_in.forward(x_t)?)?,
            references: shared(self.reference_in.forward(x_r)?)?,
            expression: self.expression_in.forward(&x_r.narrow(1, self.embedding_dim, genes)?)?,
        };
        for layer in &self.layers {
            (nodes.targets, nodes.references) = layer.forward(g, &nodes, arch, noise)?;
        }
        Ok((nodes.targets, nodes.references))
    }
}

/// CNAP pooling of each target over its references, then the expression head.
pub(crate) struct Readout {
    pool_in: Linear,
    pool: Attention,
    head: Linear,
}

impl Readout {
    fn new(src: &mut ParamSource, genes: usize, arch: &Architecture) -> Result<Self, ModelError> {
        let h = arch.hidden;
        Ok(Self {
            pool_in: Linear::attention(src, "readout.pool_in", h, h)?,
            pool: Attention::new(src, "readout.pool", h, h, h)?,
            head: Linear::standard(src, "readout.head", h, genes, true)?,
        })
    }

    /// Predicted targets (N × G) from hidden states.
    pub(crate) fn forward(
        &self,
        g: &GraphTensors,
        targets: &Tensor,
        references: &Tensor,
        arch: &Architecture,
        noise: &mut Noise,
    ) -> Result<Tensor, ModelError> {
        let t = self.pool_in.forward(targets)?;
        let pooled = (&t + self.pool.forward(&g.refer, &t, references, arch, noise)?)?;
        self.head.forward(&pooled)
    }
}

/// The whole network.
pub(crate) struct Network {
    pub(crate) encoder: Encoder,
    pub(crate) readout: Readout,
}

impl Network {
    /// Builds the network for `embedding_dim`-wide embeddings and `genes` outputs, its
    /// parameters from `src`.
    pub(crate) fn new(
        src: &mut ParamSource,
        embedding_dim: usize,
        genes: usize,
        arch: &Architecture,
    ) -> Result<Self, ModelError> {
        Ok(Self { encoder: Encoder::new(src, embedding_dim, genes, arch)?, readout: Readout::new(src, genes, arch)? })
    }

    /// The network of `config` over exactly the tensors in `weights` (one missing, misshapen or
    /// left over is an error).
    pub(crate) fn from_weights(weights: &Weights, config: &ModelConfig) -> Result<Self, ModelError> {
        let mut src = ParamSource::Existing { weights, used: BTreeSet::new() };
        let network = Self::new(&mut src, config.embedding_dim, config.genes.len(), &config.architecture)?;
        if let ParamSource::Existing { used, .. } = &src
            && let Some(extra) = weights.keys().find(|k| !used.contains(*k))
        {
            return Err(ModelError::Weights(format!("unexpected tensor {extra}")));
        }
        Ok(network)
    }

    /// Predicted targets (N × G).
    pub(crate) fn forward(
        &self,
        g: &GraphTensors,
        x_t: &Tensor,
        x_r: &Tensor,
        arch: &Architecture,
        noise: &mut Noise,
    ) -> Result<Tensor, ModelError> {
        let (targets, references) = self.encoder.forward(g, x_t, x_r, arch, noise)?;
        self.readout.forward(g, &targets, &references, arch, noise)
    }
}
