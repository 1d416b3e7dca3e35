//! The wasmtime host: one [`Engine`] with fuel and epoch interruption, a
//! ticker thread driving the epoch, and [`StrategyModule`]s compiled once
//! and instantiated in a fresh [`Store`] per call.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel,
    PoolConcurrencyLimitError, PoolingAllocationConfig, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap,
    ValType,
};

use crate::{ABI_VERSION, Error};

/// The most elements a module's function tables may hold.
const MAX_TABLE_ELEMENTS: usize = 20_000;

/// The limits every call runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Fuel per call (about one unit per WebAssembly instruction).
    pub fuel: u64,
    /// Wall-clock deadline per call, enforced by epoch interruption: the
    /// backstop for time fuel does not count (e.g. slow host calls).
    pub deadline: Duration,
    /// The largest a module's linear memory may grow, in bytes.
    pub memory_bytes: usize,
    /// The largest answer accepted, in bytes.
    pub max_output_bytes: usize,
    /// WebAssembly stack size, in bytes.
    pub max_stack_bytes: usize,
    /// How often the epoch ticks; the deadline is rounded up to whole ticks.
    pub epoch_tick: Duration,
    /// Calls that may run at once over all modules of a host: instances
    /// come from a pool of this many preallocated slots, so a call does not
    /// map and unmap its memory. A call beyond it fails (and falls back).
    pub max_concurrent_calls: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 20_000_000,
            deadline: Duration::from_millis(500),
            memory_bytes: 16 << 20,
            max_output_bytes: 1 << 20,
            max_stack_bytes: 512 << 10,
            epoch_tick: Duration::from_millis(5),
            max_concurrent_calls: 64,
        }
    }
}

impl Limits {
    fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        (self.deadline.as_nanos().div_ceil(tick) as u64).max(1)
    }
}

/// Stops the ticker thread when the last host or module holding it drops.
#[derive(Debug)]
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: &Engine, tick: Duration) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, engine) = (stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("paid-wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Self { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Loads strategy modules. Cheap to clone; clones share the engine and the
/// ticker.
#[derive(Clone)]
pub struct WasmHost {
    engine: Engine,
    limits: Limits,
    ticker: Arc<Ticker>,
    compiled: Arc<AtomicU64>,
}

impl std::fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHost").field("limits", &self.limits).finish()
    }
}

impl WasmHost {
    /// A host whose calls run under `limits`. Starts the epoch ticker thread.
    pub fn new(limits: Limits) -> Result<Self, Error> {
        let slots = limits.max_concurrent_calls.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(limits.memory_bytes);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(limits.max_stack_bytes)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let ticker = Arc::new(Ticker::start(&engine, limits.epoch_tick)?);
        Ok(Self { engine, limits, ticker, compiled: Arc::new(AtomicU64::new(0)) })
    }

    /// The limits of every call.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many modules this host (and its clones) compiled.
    pub fn modules_compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Reads, compiles and checks the module in `path`, named after the
    /// file's stem.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<StrategyModule, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        self.load(&name, &bytes)
    }

    /// Compiles and checks a module (binary, not text) named `name`: it must
    /// import nothing, export the ABI's functions with their signatures, and
    /// report [`ABI_VERSION`]. The module is compiled once; each call gets a
    /// fresh store from the same pre-linked instance.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<StrategyModule, Error> {
        if !bytes.starts_with(b"\0asm") {
            return Err(Error::Malformed {
                module: name.into(),
                message: "no WebAssembly magic number (\\0asm); is this a .wasm file?".into(),
            });
        }
        check_memory(name, bytes, self.limits.memory_bytes)?;
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| Error::Malformed { module: name.into(), message: format!("{e:#}") })?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        check_interface(name, &module)?;
        let linker: Linker<State> = Linker::new(&self.engine);
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| Error::WrongInterface { module: name.into(), message: format!("{e:#}") })?;
        let loaded = StrategyModule {
            name: name.into(),
            engine: self.engine.clone(),
            pre,
            limits: self.limits.clone(),
            calls: Arc::new(AtomicU64::new(0)),
            _ticker: self.ticker.clone(),
        };
        let found = loaded.abi_version()?;
        if found != ABI_VERSION {
            return Err(Error::AbiVersion { module: name.into(), found, expected: ABI_VERSION });
        }
        Ok(loaded)
    }
}

/// Rejects a module whose memories start larger than the cap, before
/// compiling it. Unparsable bytes pass here and fail in compilation.
fn check_memory(name: &str, bytes: &[u8], memory_bytes: usize) -> Result<(), Error> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::MemorySection(memories)) = payload else { continue };
        for memory in memories.into_iter().flatten() {
            let page = 1u64 << memory.page_size_log2.unwrap_or(16);
            if memory.initial.saturating_mul(page) > memory_bytes as u64 {
                return Err(Error::MemoryExceeded {
                    module: name.into(),
                    call: "instantiate".into(),
                    limit_bytes: memory_bytes,
                });
            }
        }
    }
    Ok(())
}

fn check_interface(name: &str, module: &Module) -> Result<(), Error> {
    let wrong = |message: String| Error::WrongInterface { module: name.into(), message };
    if let Some(import) = module.imports().next() {
        return Err(wrong(format!(
            "it imports {}::{}, but strategies get no imports (no WASI, files or network)",
            import.module(),
            import.name()
        )));
    }
    let want: [(&str, &[ValType], &[ValType]); 3] = [
        ("abi_version", &[], &[ValType::I32]),
        ("alloc", &[ValType::I32], &[ValType::I32]),
        ("decide", &[ValType::I32, ValType::I32], &[ValType::I64]),
    ];
    match module.get_export("memory") {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(_) => return Err(wrong("export `memory` is not a 32-bit, unshared memory".into())),
        None => return Err(wrong("no exported `memory`".into())),
    }
    for (export, params, results) in want {
        let Some(ExternType::Func(f)) = module.get_export(export) else {
            return Err(wrong(format!("no exported function `{export}`")));
        };
        let same = |got: &mut dyn ExactSizeIterator<Item = ValType>, want: &[ValType]| {
            got.len() == want.len() && got.zip(want).all(|(g, w)| ValType::eq(&g, w))
        };
        if !same(&mut f.params(), params) || !same(&mut f.results(), results) {
            return Err(wrong(format!("`{export}` has type {f}, expected {params:?} -> {results:?}")));
        }
    }
    Ok(())
}

/// A store's data: the memory cap, and whether it was hit.
struct State {
    limits: StoreLimits,
    memory_cap_hit: bool,
}

impl ResourceLimiter for State {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_cap_hit = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A compiled, checked strategy module. Cheap to clone; clones share the
/// compiled code and the call counter.
#[derive(Clone)]
pub struct StrategyModule {
    name: String,
    engine: Engine,
    pre: InstancePre<State>,
    limits: Limits,
    calls: Arc<AtomicU64>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for StrategyModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategyModule").field("name", &self.name).field("calls", &self.calls()).finish()
    }
}

/// An instance in a fresh store.
struct Call<'m> {
    module: &'m StrategyModule,
    call: &'m str,
    store: Store<State>,
    instance: wasmtime::Instance,
}

impl StrategyModule {
    /// The module's name, used in every error about it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls made so far (`decide` calls, not counting the ABI check).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn classify(&self, call: &str, store: &Store<State>, e: wasmtime::Error) -> Error {
        let (module, call) = (self.name.clone(), call.to_string());
        if store.data().memory_cap_hit {
            return Error::MemoryExceeded { module, call, limit_bytes: self.limits.memory_bytes };
        }
        if e.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return Error::Busy { module, call, limit: self.limits.max_concurrent_calls };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Error::OutOfFuel { module, call, fuel: self.limits.fuel },
            Some(Trap::Interrupt) => Error::Deadline { module, call, after: self.limits.deadline },
            _ => Error::Trap { module, call, message: format!("{e:#}") },
        }
    }

    fn instantiate<'m>(&'m self, call: &'m str) -> Result<Call<'m>, Error> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(1)
            .memories(1)
            .tables(4)
            .table_elements(MAX_TABLE_ELEMENTS)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, State { limits, memory_cap_hit: false });
        store.limiter(|s| s);
        store.set_fuel(self.limits.fuel).map_err(|e| Error::Engine(format!("{e:#}")))?;
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store.epoch_deadline_trap();
        let instance = match self.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => return Err(self.classify(call, &store, e)),
        };
        Ok(Call { module: self, call, store, instance })
    }

    fn abi_version(&self) -> Result<i32, Error> {
        let mut c = self.instantiate("abi_version")?;
        let f = c
            .instance
            .get_typed_func::<(), i32>(&mut c.store, "abi_version")
            .map_err(|e| Error::WrongInterface { module: self.name.clone(), message: format!("{e:#}") })?;
        f.call(&mut c.store, ()).map_err(|e| self.classify("abi_version", &c.store, e))
    }

    /// Sends `input` (JSON) to the module's `decide` in a fresh store and
    /// returns its answer (JSON), under the host's limits.
    pub fn call_raw(&self, call: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut c = self.instantiate(call)?;
        c.decide(input)
    }

    /// Calls the module with the ABI envelope `{"call", "params", "input"}`
    /// and unwraps its `{"ok": ...}` / `{"error": ...}` answer.
    pub fn call_json(
        &self,
        call: &str,
        params: &serde_json::Value,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        self.call_typed(call, params, input)
    }

    /// [`call_json`](Self::call_json) with typed input and answer, encoded
    /// and decoded without an intermediate JSON tree.
    pub fn call_typed<I: Serialize, O: DeserializeOwned>(
        &self,
        call: &str,
        params: &serde_json::Value,
        input: &I,
    ) -> Result<O, Error> {
        #[derive(Serialize)]
        struct Envelope<'a, I> {
            call: &'a str,
            params: &'a serde_json::Value,
            input: &'a I,
        }
        #[derive(Deserialize)]
        struct Answer<O> {
            ok: Option<O>,
            error: Option<serde_json::Value>,
        }
        let bad = |message: String| Error::BadOutput { module: self.name.clone(), call: call.into(), message };
        let bytes = serde_json::to_vec(&Envelope { call, params, input })
            .map_err(|e| bad(format!("cannot encode the request: {e}")))?;
        let out = self.call_raw(call, &bytes)?;
        let answer: Answer<O> = serde_json::from_slice(&out).map_err(|e| bad(format!("not a valid answer: {e}")))?;
        match answer {
            Answer { ok: Some(ok), .. } => Ok(ok),
            Answer { error: Some(serde_json::Value::String(message)), .. } => {
                Err(Error::Guest { module: self.name.clone(), call: call.into(), message })
            }
            Answer { error: Some(other), .. } => {
                Err(Error::Guest { module: self.name.clone(), call: call.into(), message: other.to_string() })
            }
            Answer { ok: None, error: None } => Err(bad("neither \"ok\" nor \"error\" in the answer".into())),
        }
    }
}

impl Call<'_> {
    fn decide(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let module = self.module;
        let call = self.call;
        let wrong =
            |e: wasmtime::Error| Error::WrongInterface { module: module.name.clone(), message: format!("{e:#}") };
        let bad = |message: String| Error::BadOutput { module: module.name.clone(), call: call.into(), message };
        let memory = self.instance.get_memory(&mut self.store, "memory").ok_or_else(|| Error::WrongInterface {
            module: module.name.clone(),
            message: "no exported `memory`".into(),
        })?;
        let alloc = self.instance.get_typed_func::<i32, i32>(&mut self.store, "alloc").map_err(wrong)?;
        let decide = self.instance.get_typed_func::<(i32, i32), i64>(&mut self.store, "decide").map_err(wrong)?;
        let len = i32::try_from(input.len()).map_err(|_| bad("the request is larger than 2 GiB".into()))?;
        let ptr = alloc.call(&mut self.store, len).map_err(|e| module.classify(call, &self.store, e))?;
        memory
            .write(&mut self.store, ptr as u32 as usize, input)
            .map_err(|_| bad(format!("alloc({len}) returned {ptr}, outside its memory")))?;
        let packed = decide.call(&mut self.store, (ptr, len)).map_err(|e| module.classify(call, &self.store, e))?;
        let (out_ptr, out_len) = ((packed as u64 >> 32) as usize, (packed as u64 & 0xFFFF_FFFF) as usize);
        if out_len > module.limits.max_output_bytes {
            return Err(bad(format!("{out_len} bytes, over the cap of {}", module.limits.max_output_bytes)));
        }
        let mut out = vec![0u8; out_len];
        memory
            .read(&self.store, out_ptr, &mut out)
            .map_err(|_| bad(format!("answer at {out_ptr}..{} lies outside its memory", out_ptr + out_len)))?;
        Ok(out)
    }
}
