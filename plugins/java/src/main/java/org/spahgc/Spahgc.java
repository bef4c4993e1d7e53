package org.spahgc;

import com.sun.jna.Library;
import com.sun.jna.Native;
import java.nio.file.Path;
import java.util.Map;

/**
 * Loads the native library {@code libspahgc} once per class loader. By default it is found by
 * the name {@code spahgc} on {@code jna.library.path} (a system property), then the system's
 * library path; {@link #useLibrary(Path)} names the file instead.
 */
public final class Spahgc {
    /** The ABI major version this binding was written for ({@code SPAHGC_ABI_VERSION}). */
    public static final int ABI_VERSION = 0;

    private static Path libraryFile;
    private static LibSpahgc library;

    private Spahgc() {}

    /**
     * Loads the library from {@code file} rather than by name. Call it before anything else of
     * this package.
     *
     * @throws IllegalStateException if the library is already loaded from elsewhere
     */
    public static synchronized void useLibrary(Path file) {
        Path absolute = file.toAbsolutePath();
        if (library != null && !absolute.equals(libraryFile)) {
            throw new IllegalStateException("libspahgc is already loaded from " + describe(libraryFile));
        }
        libraryFile = absolute;
    }

    /** The loaded library's version, e.g. {@code "0.1.0"}. */
    public static String version() {
        return lib().spahgc_version();
    }

    /**
     * The library, loaded on first use.
     *
     * @throws UnsatisfiedLinkError if it cannot be loaded, or has another ABI version
     */
    static synchronized LibSpahgc lib() {
        if (library == null) {
            if (Native.SIZE_T_SIZE != Long.BYTES) {
                throw new UnsatisfiedLinkError("the spahgc binding needs a 64-bit platform");
            }
            String name = libraryFile == null ? "spahgc" : libraryFile.toString();
            LibSpahgc loaded = Native.load(name, LibSpahgc.class, Map.of(Library.OPTION_STRING_ENCODING, "UTF-8"));
            int abi = loaded.spahgc_abi_version();
            if (abi != ABI_VERSION) {
                throw new UnsatisfiedLinkError("libspahgc " + describe(libraryFile) + " has ABI " + abi
                        + ", this binding needs " + ABI_VERSION);
            }
            library = loaded;
        }
        return library;
    }

    /**
     * Throws the library's error for a failed call's {@code status}; returns on
     * {@code SPAHGC_STATUS_OK}. Call it on the thread that made the call, before any other.
     */
    static void check(int status) {
        if (status != Status.OK.code()) {
            throw new SpahgcException(status, lib().spahgc_last_error());
        }
    }

    private static String describe(Path file) {
        return file == null ? "(found by name)" : file.toString();
    }
}
