package org.spahgc;

import java.nio.file.Files;
import java.nio.file.Path;

/** The paths build.sh passes as system properties, checked once. */
final class TestEnvironment {
    /** The test bundle (spahgc-testbundle's output). */
    static final Path BUNDLE = existing("spahgc.bundle");
    /** The directory holding onnxruntime/libonnxruntime.so. */
    static final Path RUNTIME = existing("spahgc.runtime");
    /** A fresh embedding cache directory shared by the test classes. */
    static final Path CACHE = existing("spahgc.cache");
    /** The her2st image of section C3. */
    static final Path SLIDE = existing("spahgc.slide");
    /** The CLI's expression.csv for {@link #REGION} of {@link #SLIDE}, background kept. */
    static final Path REFERENCE = existing("spahgc.reference");
    /** The region the CLI predicted: {@code --region 2500,2500,3000,3000}. */
    static final Region REGION = new Region(2500, 2500, 3000, 3000);
    /**
     * The resolution of her2st images, which carry no metadata: the CLI's {@code --her2st} uses
     * the data set's constant {@code spahgc_datasets::her2st::MICRONS_PER_PIXEL}. The centres
     * of the CLI's CSV (one decimal) check that it is still the one the CLI used.
     */
    static final double HER2ST_MPP = 0.69;

    private TestEnvironment() {}

    /** Options for a CPU engine on the test runtime and cache. */
    static EngineOptions options() {
        return EngineOptions.DEFAULTS.withDevice(Device.CPU).withRuntimeDir(RUNTIME).withCache(CACHE, 0);
    }

    private static Path existing(String property) {
        String value = System.getProperty(property);
        if (value == null || !Files.exists(Path.of(value))) {
            throw new IllegalStateException("set -D" + property + " to an existing path (build.sh does): " + value);
        }
        return Path.of(value);
    }
}
