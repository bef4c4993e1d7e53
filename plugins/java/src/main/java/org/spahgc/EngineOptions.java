package org.spahgc;

import java.nio.file.Path;
import java.util.Objects;

/**
 * How an engine runs; immutable. {@link #DEFAULTS} leaves every setting to the library's
 * defaults (device auto, ONNX Runtime's threads, no disk cache, a 10 GiB cache bound, the ONNX
 * Runtime found beside libspahgc); each {@code with} method returns a copy with one setting.
 */
public final class EngineOptions {
    /** The library's defaults. */
    public static final EngineOptions DEFAULTS = new EngineOptions(null, 0, null, 0, null);

    private final Device device;
    private final int threads;
    private final Path cacheDir;
    private final long cacheMaxBytes;
    private final Path runtimeDir;

    private EngineOptions(Device device, int threads, Path cacheDir, long cacheMaxBytes, Path runtimeDir) {
        this.device = device;
        this.threads = threads;
        this.cacheDir = cacheDir;
        this.cacheMaxBytes = cacheMaxBytes;
        this.runtimeDir = runtimeDir;
    }

    /** Runs the encoder on {@code device}. */
    public EngineOptions withDevice(Device device) {
        return new EngineOptions(Objects.requireNonNull(device), threads, cacheDir, cacheMaxBytes, runtimeDir);
    }

    /** Uses {@code threads} encoder threads (0: ONNX Runtime's default, one per core). */
    public EngineOptions withThreads(int threads) {
        if (threads < 0) {
            throw new IllegalArgumentException("threads < 0: " + threads);
        }
        return new EngineOptions(device, threads, cacheDir, cacheMaxBytes, runtimeDir);
    }

    /**
     * Keeps spot embeddings in the disk cache {@code dir} (created if missing; processes may
     * share it), bounded to {@code maxBytes} (0: 10 GiB).
     */
    public EngineOptions withCache(Path dir, long maxBytes) {
        if (maxBytes < 0) {
            throw new IllegalArgumentException("maxBytes < 0: " + maxBytes);
        }
        return new EngineOptions(device, threads, Objects.requireNonNull(dir), maxBytes, runtimeDir);
    }

    /**
     * Loads ONNX Runtime from {@code dir}/onnxruntime (the install script's
     * {@code PREFIX/lib/spahgc}). A process loads one ONNX Runtime: engines must agree.
     */
    public EngineOptions withRuntimeDir(Path dir) {
        return new EngineOptions(device, threads, cacheDir, cacheMaxBytes, Objects.requireNonNull(dir));
    }

    /** The C struct: the library's defaults with the settings made here. */
    LibSpahgc.Options toNative(LibSpahgc lib) {
        LibSpahgc.Options options = lib.spahgc_engine_options_default();
        if (device != null) {
            options.device = device.ordinal();
        }
        if (threads != 0) {
            options.threads = threads;
        }
        if (cacheDir != null) {
            options.cache_dir = cacheDir.toString();
            options.cache_max_bytes = cacheMaxBytes;
        }
        if (runtimeDir != null) {
            options.runtime_dir = runtimeDir.toString();
        }
        return options;
    }
}
