//! Runs spahgc's WebAssembly component (`wit/spahgc.wit`) under wasmtime, in a sandbox: the
//! guest sees one read-only directory, the bundle, at `/bundle`, and nothing else of the host
//! (no other files, no network, no environment); its linear memory is capped and every call
//! has a deadline (epoch interruption). A call that hits either limit, or traps, ends with an
//! error saying so, and the next call starts a fresh instance — the host never has to restart.
//!
//! [`ComponentRuntime`] compiles a component once; [`Sandbox`] is one instance with one bundle
//! open. Components of world `predictor-with-host-encoder` get the host's native encoder
//! ([`SandboxOptions::host_encoder`]); those of world `predictor` carry their own.

mod limits;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, ArrayView4};
use spahgc_encoder::Encoder;
use spahgc_engine::{PixelBuffer, Prediction, Region, RegionOptions, RegionPrediction, RequestStats};
use wasmtime::component::{Component, HasSelf, Linker, ResourceAny, ResourceTable};
use wasmtime::{Config, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use limits::Limits;
use limits::Ticker;

wasmtime::component::bindgen!({ world: "predictor-with-host-encoder", path: "../../wit" });

use spahgc::predict::types as wit;

/// Where the guest sees the bundle directory.
pub const GUEST_BUNDLE_DIR: &str = "/bundle";

/// Errors of the sandbox: the guest's own (its WIT `error` variant) and the sandbox's.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The component file cannot be read or compiled, or is not a spahgc component.
    #[error("component {path}: {reason}")]
    Component { path: PathBuf, reason: String },
    /// The guest could not open the bundle.
    #[error("bundle: {0}")]
    Bundle(String),
    /// The guest refused the request as asked.
    #[error("{0}")]
    BadInput(String),
    /// The encoder failed, inside the guest or on the host.
    #[error("encoder: {0}")]
    Encoder(String),
    /// The guest reported a failure of its own.
    #[error("component: {0}")]
    Internal(String),
    /// The call ran past its deadline and was stopped.
    #[error("the component ran past its time limit of {0:?} and was stopped; the next call starts a fresh instance")]
    TimeLimit(Duration),
    /// The guest asked for more linear memory than its limit.
    #[error(
        "the component asked for {asked} bytes of memory, over its limit of {limit} bytes, and was stopped; the next call starts a fresh instance"
    )]
    MemoryLimit { asked: usize, limit: usize },
    /// The guest trapped (a bug in the component): the instance is dropped.
    #[error("the component trapped: {0}; the next call starts a fresh instance")]
    Trap(String),
    /// wasmtime could not set up the sandbox.
    #[error("wasmtime: {0}")]
    Runtime(String),
}

impl From<wit::Error> for WasmError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::Bundle(m) => WasmError::Bundle(m),
            wit::Error::BadInput(m) => WasmError::BadInput(m),
            wit::Error::Encoder(m) => WasmError::Encoder(m),
            wit::Error::Internal(m) => WasmError::Internal(m),
        }
    }
}

/// A compiled component, shareable by any number of sandboxes.
pub struct ComponentRuntime {
    engine: wasmtime::Engine,
    component: Component,
    linker: Linker<GuestState>,
    _ticker: Ticker,
}

impl ComponentRuntime {
    /// Reads and compiles the component at `path`.
    pub fn load(path: &Path) -> Result<Arc<Self>, WasmError> {
        let fail = |reason: String| WasmError::Component { path: path.into(), reason };
        let mut config = Config::new();
        config.epoch_interruption(true).wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).map_err(|e| fail(format!("{e:#}")))?;
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let component = Component::new(&engine, &bytes)
            .map_err(|e| fail(format!("not a component wasmtime can compile: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| fail(format!("{e:#}")))?;
        PredictorWithHostEncoder::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| fail(format!("{e:#}")))?;
        let ticker = Ticker::start(engine.clone())
            .map_err(|e| WasmError::Runtime(format!("starting the deadline thread: {e}")))?;
        Ok(Arc::new(Self { engine, component, linker, _ticker: ticker }))
    }
}

/// How a [`Sandbox`] runs.
#[derive(Clone, Default)]
pub struct SandboxOptions {
    pub limits: Limits,
    /// The encoder behind the `encoder` import (world `predictor-with-host-encoder`): the
    /// bundle's encoder, loaded natively by the host.
    pub host_encoder: Option<Arc<Encoder>>,
}

/// What a guest's store holds.
struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: limits::MemoryLimit,
    host_encoder: Option<Arc<Encoder>>,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wit::Host for GuestState {}

impl spahgc::predict::encoder::Host for GuestState {
    fn embed(&mut self, count: u32, size: u32, patches: Vec<f32>) -> Result<Vec<f32>, String> {
        let encoder = self.host_encoder.as_ref().ok_or("this host runs no encoder for the component")?;
        let shape = (count as usize, 3, size as usize, size as usize);
        let batch = ArrayView4::from_shape(shape, &patches)
            .map_err(|_| format!("{} values are not {count} patches of 3 x {size} x {size}", patches.len()))?;
        let embedded = encoder.run(batch).map_err(|e| e.to_string())?.embedding;
        Ok(embedded.into_raw_vec_and_offset().0)
    }
}

/// A live instance with the bundle open in it.
struct Instance {
    store: Store<GuestState>,
    bindings: PredictorWithHostEncoder,
    engine: ResourceAny,
}

/// One component instance with one bundle open, re-created after any call that traps.
pub struct Sandbox {
    runtime: Arc<ComponentRuntime>,
    bundle: PathBuf,
    options: SandboxOptions,
    live: Option<Instance>,
}

impl Sandbox {
    /// Starts an instance of `runtime`'s component that sees `bundle` (read-only) and opens it.
    pub fn open(runtime: Arc<ComponentRuntime>, bundle: &Path, options: SandboxOptions) -> Result<Self, WasmError> {
        let mut sandbox = Self { runtime, bundle: bundle.into(), options, live: None };
        sandbox.instance()?;
        Ok(sandbox)
    }

    /// Sets the deadline of each call from now on (the memory limit applies to new instances).
    pub fn set_limits(&mut self, limits: Limits) {
        self.options.limits = limits;
    }

    /// The genes the bundle predicts, in column order.
    pub fn genes(&mut self) -> Result<Vec<String>, WasmError> {
        self.call(|i| {
            let engine = i.engine;
            i.bindings.spahgc_predict_engine().engine().call_genes(&mut i.store, engine).map(Ok)
        })
    }

    /// Forgets the spots the guest holds in memory, as [`spahgc_engine::Engine::clear_memory`].
    pub fn clear_memory(&mut self) -> Result<(), WasmError> {
        self.call(|i| {
            let engine = i.engine;
            i.bindings.spahgc_predict_engine().engine().call_clear_memory(&mut i.store, engine).map(Ok)
        })
    }

    /// The rectangle to read for [`Sandbox::predict_pixels`] of `region` to equal a prediction
    /// of `region` from the whole slide, as [`spahgc_engine::Engine::pixel_context`] gives it.
    pub fn pixel_context(&mut self, region: Region, microns_per_pixel: f64) -> Result<Region, WasmError> {
        let asked = wit::Rect { x: region.x, y: region.y, width: region.width, height: region.height };
        let found = self.call(|i| {
            let engine = i.engine;
            let found = i.bindings.spahgc_predict_engine().engine().call_pixel_context(
                &mut i.store,
                engine,
                asked,
                microns_per_pixel,
            )?;
            Ok(Ok(found))
        })?;
        Ok(Region { x: found.x, y: found.y, width: found.width, height: found.height })
    }

    /// Expression of the grid spots of pixels the host holds, as
    /// [`spahgc_engine::Engine::predict_pixels`] gives it (`options.microns_per_pixel` is
    /// required); `genes` picks columns (default: all).
    pub fn predict_pixels(
        &mut self,
        pixels: &PixelBuffer,
        origin: (u64, u64),
        options: &RegionOptions,
        genes: Option<&[String]>,
    ) -> Result<RegionPrediction, WasmError> {
        let start = Instant::now();
        let mpp =
            options.microns_per_pixel.ok_or_else(|| WasmError::BadInput("give the pixels' µm per pixel".into()))?;
        let stride = u32::try_from(pixels.stride).map_err(|_| {
            WasmError::BadInput(format!("stride {} bytes does not fit the interface's u32", pixels.stride))
        })?;
        let buffer = wit::Pixels {
            width: pixels.width,
            height: pixels.height,
            stride,
            format: match pixels.format {
                spahgc_engine::PixelFormat::Rgba8 => wit::PixelFormat::Rgba8,
                spahgc_engine::PixelFormat::Rgb8 => wit::PixelFormat::Rgb8,
                spahgc_engine::PixelFormat::Bgra8Premultiplied => wit::PixelFormat::Bgra8Premultiplied,
            },
            data: pixels.pixels.to_vec(),
        };
        let region = options.region.map(|r| wit::Rect { x: r.x, y: r.y, width: r.width, height: r.height });
        let found = self.call(|i| {
            let engine = i.engine;
            i.bindings.spahgc_predict_engine().engine().call_predict_pixels(
                &mut i.store,
                engine,
                &buffer,
                origin.0,
                origin.1,
                mpp,
                region,
                genes,
                options.tissue_only,
            )
        })?;
        let spots = &found.spots;
        Ok(RegionPrediction {
            ids: spots.iter().map(|s| s.id.clone()).collect(),
            centres: spots.iter().map(|s| (s.x, s.y)).collect(),
            in_tissue: spots.iter().map(|s| s.in_tissue).collect(),
            diameter_px: found.diameter,
            microns_per_pixel: mpp,
            prediction: prediction(found.expression, spots.len(), start)?,
        })
    }

    /// Expression of spots centred at `centres` whose embeddings (spots × the encoder's
    /// dimension) the host computed, as [`spahgc_engine::Engine::predict_embeddings`] gives it.
    pub fn predict_embeddings(
        &mut self,
        centres: &[(f64, f64)],
        embeddings: ArrayView2<f32>,
        genes: Option<&[String]>,
    ) -> Result<Prediction, WasmError> {
        let start = Instant::now();
        let values: Vec<f32> = embeddings.iter().copied().collect();
        let found = self.call(|i| {
            let engine = i.engine;
            i.bindings.spahgc_predict_engine().engine().call_predict_embeddings(
                &mut i.store,
                engine,
                centres,
                &values,
                genes,
            )
        })?;
        prediction(found, centres.len(), start)
    }

    /// Asks the component to open a bundle at `guest_path` as the guest sees its file system,
    /// and closes it again: how a host checks what a component can (and cannot) reach.
    pub fn probe_open(&mut self, guest_path: &str) -> Result<(), WasmError> {
        self.call(|i| {
            let engine = i.bindings.spahgc_predict_engine().engine();
            match engine.call_open(&mut i.store, guest_path)? {
                Ok(opened) => opened.resource_drop(&mut i.store).map(|()| Ok(())),
                Err(e) => Ok(Err(e)),
            }
        })
    }

    /// Runs one guest call under the limits; a trap drops the instance.
    fn call<R>(
        &mut self,
        run: impl FnOnce(&mut Instance) -> wasmtime::Result<Result<R, wit::Error>>,
    ) -> Result<R, WasmError> {
        let limits = self.options.limits;
        let instance = self.instance()?;
        instance.store.set_epoch_deadline(limits.ticks());
        match run(instance) {
            Ok(answer) => answer.map_err(WasmError::from),
            Err(trap) => {
                let error = self.explain(trap);
                self.live = None;
                Err(error)
            }
        }
    }

    /// The live instance, started (and the bundle opened) if there is none.
    fn instance(&mut self) -> Result<&mut Instance, WasmError> {
        if self.live.is_none() {
            self.live = Some(self.start()?);
        }
        Ok(self.live.as_mut().expect("started above"))
    }

    fn start(&mut self) -> Result<Instance, WasmError> {
        let runtime = &self.runtime;
        let mut wasi = WasiCtxBuilder::new();
        wasi.preopened_dir(&self.bundle, GUEST_BUNDLE_DIR, FsPerms::ReadOnly).map_err(|e| {
            WasmError::Bundle(format!("{}: cannot be pre-opened for the component: {e:#}", self.bundle.display()))
        })?;
        let state = GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: limits::MemoryLimit::new(self.options.limits.memory_bytes),
            host_encoder: self.options.host_encoder.clone(),
        };
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(self.options.limits.ticks());
        let started = PredictorWithHostEncoder::instantiate(&mut store, &runtime.component, &runtime.linker).and_then(
            |bindings| {
                let opened = bindings.spahgc_predict_engine().engine().call_open(&mut store, GUEST_BUNDLE_DIR)?;
                Ok((bindings, opened))
            },
        );
        match started {
            Ok((bindings, Ok(engine))) => Ok(Instance { store, bindings, engine }),
            Ok((_, Err(e))) => Err(e.into()),
            Err(trap) => Err(self.explain_in(trap, &store)),
        }
    }

    /// The error for a trap of the live instance.
    fn explain(&self, trap: wasmtime::Error) -> WasmError {
        match &self.live {
            Some(instance) => self.explain_in(trap, &instance.store),
            None => WasmError::Trap(format!("{trap:#}")),
        }
    }

    /// The error for a trap of `store`: a limit it hit, else the trap itself.
    fn explain_in(&self, trap: wasmtime::Error, store: &Store<GuestState>) -> WasmError {
        if let Some(asked) = store.data().memory.refused() {
            return WasmError::MemoryLimit { asked, limit: self.options.limits.memory_bytes };
        }
        match trap.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => WasmError::TimeLimit(self.options.limits.time),
            _ => WasmError::Trap(format!("{trap:#}")),
        }
    }
}

/// A WIT expression as a [`Prediction`] of `spots` rows.
fn prediction(found: wit::Expression, spots: usize, start: Instant) -> Result<Prediction, WasmError> {
    let genes = found.genes;
    let expression = Array2::from_shape_vec((spots, genes.len()), found.values).map_err(|_| {
        WasmError::Internal(format!("the component returned values that are not {spots} spots x {} genes", genes.len()))
    })?;
    let stats = RequestStats { spots, total_s: start.elapsed().as_secs_f64(), ..RequestStats::default() };
    Ok(Prediction { genes, expression, stats })
}
